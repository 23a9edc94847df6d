_base_ = ['../_base_/mesh/metro-mini_generated.py', '../_base_/methods/dropkey-cross.py']
# Encoder self-attention only: its keys are the 8x8 image tokens (64 px at stride 8); the
# decoder's keys are its 26 queries, not a grid. dropkey-dec regularises both stacks, so
# comparing with it is not like-for-like.
dropkey_scope = dict(groups=[r'^encoder\.'], key_grid=(8, 8))
