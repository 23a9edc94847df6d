_base_ = ['../_base_/classification/vit-mini_digits.py', '../_base_/methods/dropkey-cross.py']
