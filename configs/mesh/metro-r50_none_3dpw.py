_base_ = ['../_base_/mesh/metro-r50_3dpw.py', '../_base_/methods/none.py']
