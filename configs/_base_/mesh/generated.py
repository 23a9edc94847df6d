# The generated body rendered at 96 px (1000 train / 250 test), written to data_root unless a
# complete set is there: python -m tasks.mesh.generate --out data/generated/mesh
task = 'mesh'
dataset_name = 'generated-smpl'
data_root = 'data/generated/mesh'
primary_metric = 'mesh/pa_mpjpe'
higher_is_better = False
custom_imports = dict(imports=['tasks.mesh'], allow_failed_imports=False)
input_size = 64

train_dataloader = dict(
    batch_size=32, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='MeshDataset', data_root=data_root, ann_file='train.npz',
                 input_size=input_size, scale_jitter=0.1, shift_jitter=0.05,
                 generate_if_missing=True))
val_dataloader = dict(
    batch_size=50, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='MeshDataset', data_root=data_root, ann_file='test.npz',
                 input_size=input_size, generate_if_missing=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='MeshMetric', root_alignment='pelvis')
test_evaluator = val_evaluator
