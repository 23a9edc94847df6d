_base_ = ['../_base_/detection/dino-tiny_shapes.py', '../_base_/methods/drophead.py']
