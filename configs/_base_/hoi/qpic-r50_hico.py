# QPIC-R50 on HICO-DET (Tamura et al., CVPR 2021): 6+6 layers of width 256, 100 queries,
# AdamW 1e-4 (backbone 1e-5), 150 epochs with the lr divided by 10 at epoch 100, 8 GPUs x 2.
# QPIC starts from COCO-trained DETR-R50 weights: pass them with
# --cfg-options load_from=PATH (nothing is downloaded; without them training starts from scratch).
_base_ = ['../default_runtime.py', 'hico.py']

default_scope = 'mmdet'

embed_dims = 256
attn_cfg = dict(embed_dims=embed_dims, num_heads=8, dropout=0.1, batch_first=True)
ffn_cfg = dict(embed_dims=embed_dims, feedforward_channels=2048, num_fcs=2, ffn_drop=0.1,
               act_cfg=dict(type='ReLU', inplace=True))
model = dict(
    type='QPIC',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=1),
    backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(3, ), frozen_stages=1,
                  norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True, style='pytorch'),
    in_channels=2048,
    encoder=dict(num_layers=6, layer_cfg=dict(self_attn_cfg=attn_cfg, ffn_cfg=ffn_cfg)),
    decoder=dict(num_layers=6, return_intermediate=True,
                 layer_cfg=dict(self_attn_cfg=attn_cfg, cross_attn_cfg=attn_cfg,
                                ffn_cfg=ffn_cfg)),
    positional_encoding=dict(num_feats=embed_dims // 2, normalize=True),
    num_queries=100, num_obj_classes=80, num_verbs={{_base_.num_verbs}})
# As in the embedded model: DropKey (or the baseline) replaces the attention dropout of the
# encoder and decoder self-attention; cross-attention keeps DETR's dropout of 0.1.
dropkey_scope = dict(groups=[r'^encoder\.', r'^decoder\.'], exclude=r'cross_attn')

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4), clip_grad=dict(max_norm=0.1),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, begin=0, milestones=[100], gamma=0.1)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=150, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(base_batch_size=16)
default_hooks = dict(logger=dict(interval=100), checkpoint=dict(interval=10))
