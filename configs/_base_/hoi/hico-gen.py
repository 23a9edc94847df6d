# Synthetic HICO-DET-format data (tasks/hoi/generate.py): 800 train / 200 test images of 112 px,
# 6 verbs, 6 object classes, 3 rare triplets. Written to data_root on first use
# (generate_if_missing).
task = 'hoi'
dataset_name = 'hico-gen'
data_root = 'data/generated/hoi/'
num_verbs = 6
primary_metric = 'hoi/default_full'
higher_is_better = True
custom_imports = dict(imports=['tasks.hoi'], allow_failed_imports=False)

meta_keys = ('img_id', 'img_path', 'file_name', 'ori_shape', 'img_shape', 'scale_factor',
             'flip', 'flip_direction', 'hoi_triplets')
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs', meta_keys=meta_keys),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackDetInputs', meta_keys=meta_keys),
]
train_dataloader = dict(
    batch_size=16, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='HicoDetDataset', data_root=data_root, num_verbs=num_verbs,
                 generate_if_missing=True, ann_file='annotations/trainval_hico.json',
                 data_prefix=dict(img='images/train2015/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=50, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='HicoDetDataset', data_root=data_root, num_verbs=num_verbs,
                 generate_if_missing=True, ann_file='annotations/test_hico.json',
                 data_prefix=dict(img='images/test2015/'), pipeline=test_pipeline,
                 test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='HoiMetric', data_root=data_root)
test_evaluator = val_evaluator
