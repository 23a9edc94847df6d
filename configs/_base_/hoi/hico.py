# HICO-DET in the QPIC/CDN layout: data/hico_20160224_det/{annotations,images/{train,test}2015}
# (annotations: trainval_hico.json, test_hico.json, corre_hico.npy from the QPIC release).
_base_ = ['hico-gen.py']

dataset_name = 'hico-det'
data_root = 'data/hico_20160224_det/'
num_verbs = 117

# QPIC's scale augmentation (shorter side 480..800, longer <= 1333) and flip; QPIC's random
# crop is left out because it can drop boxes that HOIs refer to.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomChoiceResize', scales=[(1333, s) for s in range(480, 801, 32)],
         keep_ratio=True),
    dict(type='PackDetInputs', meta_keys={{_base_.meta_keys}}),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='PackDetInputs', meta_keys={{_base_.meta_keys}}),
]
train_dataloader = dict(
    batch_size=2, num_workers=2, persistent_workers=True,
    dataset=dict(data_root=data_root, num_verbs=num_verbs, generate_if_missing=False,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=2, persistent_workers=True,
    dataset=dict(data_root=data_root, num_verbs=num_verbs, generate_if_missing=False,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='HoiMetric', data_root=data_root)
test_evaluator = val_evaluator
