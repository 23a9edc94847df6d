_base_ = ['../_base_/classification/volo-d1_imagenet.py', '../_base_/methods/attndrop.py']
