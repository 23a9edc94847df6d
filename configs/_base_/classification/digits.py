# scikit-learn's digits (real 8x8 images, shipped with the package); fixed split, see DigitsDataset.
task = 'classification'
dataset_name = 'digits'
primary_metric = 'cls/top1'
higher_is_better = True
custom_imports = dict(imports=['tasks.classification'], allow_failed_imports=False)

train_dataloader = dict(
    batch_size=64, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='DigitsDataset', split='train'))
val_dataloader = dict(
    batch_size=360, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='DigitsDataset', split='val'))
test_dataloader = val_dataloader
val_evaluator = dict(type='ClassificationMetric')
test_evaluator = val_evaluator
