# DAB-DETR (mmdet's dab-detr_r50_8xb2-50e recipe) scaled down for CPU: a ResNet-18 layout with
# 32 base channels trained from scratch (last stage at stride 16: 8x8 image tokens at 128 px),
# 3 encoder and 3 decoder layers of width 128, 20 queries. Every attention here is a dot product
# (encoder self-attention: nn.MultiheadAttention; decoder self- and cross-attention: mmdet's
# ConditionalAttention); DropKey goes into all of them, the encoder and the decoder stack each
# with its own layer schedule. Keep the cross-attention out with
# --cfg-options dropkey_scope.exclude=cross_attn
_base_ = ['../default_runtime.py', 'shapes.py']

default_scope = 'mmdet'
embed_dims = 128
num_heads = 8
model = dict(
    type='DABDETR',
    num_queries=20,
    with_random_refpoints=False,
    num_patterns=0,
    data_preprocessor=dict(
        type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True, pad_size_divisor=1),
    backbone=dict(
        type='ResNet', depth=18, base_channels=32, num_stages=4, strides=(1, 2, 2, 1),
        out_indices=(3, ), frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False, style='pytorch', init_cfg=None),
    neck=dict(type='ChannelMapper', in_channels=[256], kernel_size=1, out_channels=embed_dims,
              act_cfg=None, norm_cfg=None, num_outs=1),
    encoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, num_heads=num_heads, dropout=0.0,
                               batch_first=True),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=4 * embed_dims, num_fcs=2,
                         ffn_drop=0.0, act_cfg=dict(type='PReLU')))),
    decoder=dict(
        num_layers=3,
        query_dim=4,
        query_scale_type='cond_elewise',
        with_modulated_hw_attn=True,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, num_heads=num_heads, attn_drop=0.0,
                               proj_drop=0.0, cross_attn=False),
            cross_attn_cfg=dict(embed_dims=embed_dims, num_heads=num_heads, attn_drop=0.0,
                                proj_drop=0.0, cross_attn=True),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=4 * embed_dims, num_fcs=2,
                         ffn_drop=0.0, act_cfg=dict(type='PReLU'))),
        return_intermediate=True),
    positional_encoding=dict(num_feats=embed_dims // 2, temperature=20, normalize=True),
    bbox_head=dict(
        type='DABDETRHead', num_classes=3, embed_dims=embed_dims,
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                      loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='FocalLossCost', weight=2.0, eps=1e-8),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=20))
dropkey_scope = dict(groups=[r'^encoder\.', r'^decoder\.'], exclude=None)

max_epochs = 30
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=4e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
         eta_min=4e-6, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(checkpoint=dict(interval=10))
