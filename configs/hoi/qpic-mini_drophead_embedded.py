_base_ = ['../_base_/hoi/qpic-mini_hico-gen.py', '../_base_/methods/drophead.py']
