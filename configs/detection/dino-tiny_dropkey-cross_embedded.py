_base_ = ['../_base_/detection/dino-tiny_shapes.py', '../_base_/methods/dropkey-cross.py']
# Encoder self-attention only: its keys are the image tokens of both levels (16x16 at stride 8,
# then 8x8 at stride 16, at 128 px); the decoder's keys are queries, not a grid. dropkey-dec
# regularises both stacks, so comparing with it is not like-for-like.
dropkey_scope = dict(groups=[r'^encoder\.'], key_grid=((16, 16), (8, 8)))
