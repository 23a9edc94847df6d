# HICO-DET in the QPIC/CDN layout: data/hico_20160224_det/{annotations,images/{train,test}2015}
# (annotations: trainval_hico.json, test_hico.json, corre_hico.npy from the QPIC release).
task = 'hoi'
dataset_name = 'hico-det'
data_root = 'data/hico_20160224_det/'
num_verbs = 117
primary_metric = 'hoi/default_full'
higher_is_better = True
custom_imports = dict(imports=['tasks.hoi'], allow_failed_imports=False)

# The HOI triplets ride in the metainfo (tasks/hoi/datasets.py).
meta_keys = ('img_id', 'img_path', 'file_name', 'ori_shape', 'img_shape', 'scale_factor',
             'flip', 'flip_direction', 'hoi_triplets')
# QPIC's scale augmentation (shorter side 480..800, longer <= 1333) and flip; QPIC's random
# crop is left out because it can drop boxes that HOIs refer to.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomChoiceResize', scales=[(1333, s) for s in range(480, 801, 32)],
         keep_ratio=True),
    dict(type='PackDetInputs', meta_keys=meta_keys),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='PackDetInputs', meta_keys=meta_keys),
]
train_dataloader = dict(
    batch_size=2, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='HicoDetDataset', data_root=data_root, num_verbs=num_verbs,
                 ann_file='annotations/trainval_hico.json',
                 data_prefix=dict(img='images/train2015/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='HicoDetDataset', data_root=data_root, num_verbs=num_verbs,
                 ann_file='annotations/test_hico.json',
                 data_prefix=dict(img='images/test2015/'), pipeline=test_pipeline,
                 test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='HoiMetric', data_root=data_root)
test_evaluator = val_evaluator
