# A small QPIC for the synthetic data: ResNet-18 stem and three stages of width 32-128 (stride 16,
# 7x7 tokens), 3 encoder + 3 decoder layers of width 96, 16 HOI queries. Box centres are
# predicted relative to per-query reference points, which makes it converge in minutes on a CPU.
_base_ = ['../default_runtime.py', 'hico-gen.py']

default_scope = 'mmdet'

embed_dims = 96
attn_cfg = dict(embed_dims=embed_dims, num_heads=4, dropout=0.0, batch_first=True)
ffn_cfg = dict(embed_dims=embed_dims, feedforward_channels=256, num_fcs=2, ffn_drop=0.0,
               act_cfg=dict(type='ReLU', inplace=True))
model = dict(
    type='QPIC',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=1),
    backbone=dict(type='ResNet', depth=18, base_channels=32, num_stages=3, strides=(1, 2, 2),
                  dilations=(1, 1, 1), out_indices=(2, ), frozen_stages=-1,
                  norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False, style='pytorch'),
    in_channels=128,
    encoder=dict(num_layers=3, layer_cfg=dict(self_attn_cfg=attn_cfg, ffn_cfg=ffn_cfg)),
    decoder=dict(num_layers=3, return_intermediate=True,
                 layer_cfg=dict(self_attn_cfg=attn_cfg, cross_attn_cfg=attn_cfg,
                                ffn_cfg=ffn_cfg)),
    positional_encoding=dict(num_feats=embed_dims // 2, normalize=True),
    num_queries=16, num_obj_classes=80, num_verbs={{_base_.num_verbs}},
    with_reference_points=True)
# DropKey in the self-attention of both stacks, one schedule per stack; cross-attention keeps
# plain attention (its keys are image tokens already regularised in the encoder).
dropkey_scope = dict(groups=[r'^encoder\.', r'^decoder\.'], exclude=r'cross_attn')

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=4e-4, weight_decay=1e-4), clip_grad=dict(max_norm=0.1))
# Two warm-up epochs, then a cosine down to eta_min at the last iteration: the cosine's end and
# period default to train_cfg.max_epochs, so shortening the run (to 3 epochs or more) shortens it.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=2,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=2, eta_min=1e-5,
         convert_to_iter_based=True),
]
# 80 epochs: at 40 the Full mAP was still rising steeply (0.30 -> 0.37 over the last 10 epochs of
# `none` seed 0), so the final value read how early a seed's boxes began to localise rather than
# where training leads; docs/results.md, "Recipes that resolve".
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=80, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(checkpoint=dict(interval=20))
