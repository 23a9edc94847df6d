# A small METRO-style regressor: ResNet-18 to stride 8 (8x8 image tokens at 64 px), 2 encoder
# blocks over the tokens, 3 decoder layers with 26 SMPL-parameter queries (24 rotations, shape,
# camera). DropKey: its own schedule over each stack (encoder blocks; decoder self+cross attention).
_base_ = ['../default_runtime.py', 'generated.py']

model = dict(
    type='MeshTransformer', generated_root='data/generated/mesh',
    body_model_dir='data/generated/mesh/smpl', mean_params='data/generated/mesh/mean_params.npz',
    input_size=64, backbone='resnet18', backbone_stages=2, embed_dim=128, num_heads=4,
    encoder_depth=2, decoder_depth=3, mlp_ratio=2.0,
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375]))
dropkey_scope = dict(groups=[r'^encoder\.', r'^decoder\.'])
max_epochs = 30
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=2,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=2, end=max_epochs, T_max=max_epochs - 2,
         eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(checkpoint=dict(interval=max_epochs), logger=dict(interval=10))
