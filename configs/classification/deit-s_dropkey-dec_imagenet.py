_base_ = ['../_base_/classification/deit-s_imagenet.py', '../_base_/methods/dropkey-dec.py']
