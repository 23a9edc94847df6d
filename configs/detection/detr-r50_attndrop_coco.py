_base_ = ['../_base_/detection/detr-r50_coco.py', '../_base_/methods/attndrop.py']
