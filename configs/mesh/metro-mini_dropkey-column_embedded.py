_base_ = ['../_base_/mesh/metro-mini_generated.py', '../_base_/methods/dropkey-column.py']
