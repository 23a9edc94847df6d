# Human3.6M (protocol 2: S9, S11 for testing) in SPIN's preprocessed layout with SMPL fits
# (pose, shape). S and part are in SPIN's 24-joint order; joint_map names the SMPL joint of
# each (approximate for pelvis and neck; -1 = not an SMPL joint). Evaluation needs pose/shape in
# the test file: ground truth joints and vertices come from the SMPL fit.
task = 'mesh'
dataset_name = 'h36m'
data_root = 'data/h36m'
primary_metric = 'mesh/pa_mpjpe'
higher_is_better = False
custom_imports = dict(imports=['tasks.mesh'], allow_failed_imports=False)
input_size = 224
spin_j24_to_smpl = [8, 5, 2, 1, 4, 7, 21, 19, 17, 16, 18, 20, 12, -1, 0,
                    -1, -1, -1, -1, -1, -1, -1, -1, -1]

train_dataloader = dict(
    batch_size=32, num_workers=8, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='MeshDataset', data_root=data_root, ann_file='h36m_train.npz',
                 input_size=input_size, joint_map=spin_j24_to_smpl, scale_jitter=0.25,
                 shift_jitter=0.1))
val_dataloader = dict(
    batch_size=64, num_workers=8, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='MeshDataset', data_root=data_root, ann_file='h36m_valid_protocol2.npz',
                 input_size=input_size, joint_map=spin_j24_to_smpl))
test_dataloader = val_dataloader
val_evaluator = dict(type='MeshMetric', root_alignment='mid_hip')
test_evaluator = val_evaluator
