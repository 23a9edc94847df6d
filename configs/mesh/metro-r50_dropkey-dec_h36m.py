_base_ = ['../_base_/mesh/metro-r50_h36m.py', '../_base_/methods/dropkey-dec.py']
