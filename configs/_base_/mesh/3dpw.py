# 3DPW in SPIN's preprocessed layout (data_root/3dpw_{train,test}.npz, imgname relative to
# data_root). SMPL files are licensed: put SMPL_{NEUTRAL,MALE,FEMALE}.pkl, J_regressor_h36m.npy
# and SPIN's smpl_mean_params.npz in data/smpl. Gendered ground truth, as 3DPW's evaluation does.
task = 'mesh'
dataset_name = '3dpw'
data_root = 'data/3dpw'
primary_metric = 'mesh/pa_mpjpe'
higher_is_better = False
custom_imports = dict(imports=['tasks.mesh'], allow_failed_imports=False)
input_size = 224

train_dataloader = dict(
    batch_size=32, num_workers=8, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='MeshDataset', data_root=data_root, ann_file='3dpw_train.npz',
                 input_size=input_size, scale_jitter=0.25, shift_jitter=0.1))
val_dataloader = dict(
    batch_size=64, num_workers=8, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='MeshDataset', data_root=data_root, ann_file='3dpw_test.npz',
                 input_size=input_size))
test_dataloader = val_dataloader
# METRO / Mesh Graphormer align on the mid-hip; SPIN on the pelvis.
val_evaluator = dict(type='MeshMetric', root_alignment='mid_hip')
test_evaluator = val_evaluator
