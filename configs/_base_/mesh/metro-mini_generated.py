# A small METRO-style regressor: ResNet-18 to stride 8 (8x8 image tokens at 64 px), 2 encoder
# blocks over the tokens, 3 decoder layers with 26 SMPL-parameter queries (24 rotations, shape,
# camera). DropKey: its own schedule over each stack (encoder blocks; decoder self+cross attention).
# 30 epochs, evaluated and saved once at the end; a shorter train_cfg.max_epochs shortens the
# cosine schedule with it and still evaluates and saves at its last epoch.
_base_ = ['../default_runtime.py', 'generated.py']

model = dict(
    type='MeshTransformer',
    # The generated body and the generated training split's mean pose and shape, both computed
    # in memory (tasks/mesh/procedural_body.py, tasks/mesh/generate.py): no file is read.
    body_model_dir=None, mean_params=None,
    input_size=64, backbone='resnet18', backbone_stages=2, embed_dim=128, num_heads=4,
    encoder_depth=2, decoder_depth=3, mlp_ratio=2.0,
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375]))
dropkey_scope = dict(groups=[r'^encoder\.', r'^decoder\.'])
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=2,
         convert_to_iter_based=True),
    # end (and so T_max = end - begin) defaults to train_cfg.max_epochs
    dict(type='CosineAnnealingLR', by_epoch=True, begin=2, eta_min=1e-5,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=30, val_interval=30)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(checkpoint=dict(interval=30), logger=dict(interval=10))
