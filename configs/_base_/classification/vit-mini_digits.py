# A 6-layer ViT over the 8x8 digits with 2x2-pixel patches (a 4x4 key grid) and global average
# pooling: with a class token, 1437 training images left most runs on a chance-level plateau for
# the first 10 epochs and some seeds (0.82 top-1) never caught up.
_base_ = ['../default_runtime.py', 'digits.py']

model = dict(
    type='TimmClassifier', model_name='vit_tiny_patch16_224', num_classes=10,
    img_size=8, patch_size=2, in_chans=1, embed_dim=64, depth=6, num_heads=4, mlp_ratio=2.0,
    class_token=False, global_pool='avg',
    label_smoothing=0.1)
train_dataloader = dict(batch_size=32)
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=True, begin=0, end=3,
         convert_to_iter_based=True),
    # end (and so T_max = end - begin) defaults to train_cfg.max_epochs
    dict(type='CosineAnnealingLR', by_epoch=True, begin=3, eta_min=1e-5,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=60, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(checkpoint=dict(interval=10))
