# Generated shapes (tasks/detection/generate.py): 600 train / 150 val COCO-format images of
# 128 px, written to data_root on first use (generate_if_missing). To regenerate, remove
# data_root; python -m tasks.detection.generate --out DIR writes the set elsewhere.
task = 'detection'
dataset_name = 'shapes'
data_root = 'data/generated/detection/'
image_size = 128
primary_metric = 'coco/bbox_mAP'
higher_is_better = True
custom_imports = dict(imports=['tasks.detection'], allow_failed_imports=False)
metainfo = dict(classes=('circle', 'square', 'triangle'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=8, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='CheckedCocoDataset', data_root=data_root, metainfo=metainfo,
        ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=False), pipeline=train_pipeline,
        generate_if_missing=True))
val_dataloader = dict(
    batch_size=16, num_workers=0, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CheckedCocoDataset', data_root=data_root, metainfo=metainfo,
        ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
        test_mode=True, pipeline=test_pipeline, generate_if_missing=True))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CheckedCocoMetric', ann_file=data_root + 'annotations/instances_val.json',
    metric='bbox', classwise=True,
    # No mAP_l: generated shapes stay under COCO's 96² px 'large' area (at most 87 px across
    # at image_size 128), so pycocotools would report -1 (undefined) for it in every run.
    metric_items=['mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'AR@100'])
test_evaluator = val_evaluator
