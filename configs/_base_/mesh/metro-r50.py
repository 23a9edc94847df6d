# Paper-scale METRO-style regressor (FastMETRO-S-like): ResNet-50 at 224 px (7x7 image tokens),
# 3 encoder blocks and 3 decoder layers at width 512, 8 heads; Adam 1e-4, batch 32, 60 epochs.
# No pretrained weights are downloaded: set load_from or init_cfg to an ImageNet checkpoint.
_base_ = ['../default_runtime.py']
model = dict(
    type='MeshTransformer', body_model_dir='data/smpl',
    mean_params='data/smpl/smpl_mean_params.npz', input_size=224, backbone='resnet50',
    backbone_stages=4, embed_dim=512, num_heads=8, encoder_depth=3, decoder_depth=3,
    mlp_ratio=4.0, drop_path_rate=0.1,
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375]))
dropkey_scope = dict(groups=[r'^encoder\.', r'^decoder\.'])
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[40], gamma=0.1),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=60, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(base_batch_size=32)
default_hooks = dict(logger=dict(interval=100))
