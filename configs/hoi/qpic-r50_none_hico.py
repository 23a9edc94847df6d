_base_ = ['../_base_/hoi/qpic-r50_hico.py', '../_base_/methods/none.py']
