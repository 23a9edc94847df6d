# DeiT-S at 224 px with the DeiT recipe: 300 epochs, AdamW, 8 GPUs x 128 images.
_base_ = ['../default_runtime.py', 'imagenet.py']

model = dict(
    type='TimmClassifier', model_name='deit_small_patch16_224', num_classes=1000,
    drop_path_rate=0.1, label_smoothing=0.1, mixup=dict(mixup_alpha=0.8, cutmix_alpha=1.0))
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={'.cls_token': dict(decay_mult=0.0),
                                    '.pos_embed': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    # end (and so T_max = end - begin) defaults to train_cfg.max_epochs
    dict(type='CosineAnnealingLR', by_epoch=True, begin=5, eta_min=1e-5,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=300, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(base_batch_size=1024)
default_hooks = dict(logger=dict(interval=100))
