_base_ = ['../_base_/hoi/qpic-mini_hico-gen.py', '../_base_/methods/dropkey-block.py']
# Encoder self-attention only: its keys are the 7x7 image tokens (112 px at stride 16); the
# decoder's keys are queries, not a grid. dropkey-dec regularises both stacks, so comparing with
# it is not like-for-like.
dropkey_scope = dict(groups=[r'^encoder\.'], key_grid=(7, 7))
