_base_ = ['../_base_/detection/dab-detr-tiny_shapes.py', '../_base_/methods/dropkey-inc.py']
