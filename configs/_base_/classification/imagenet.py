# ImageNet-1k as class folders: data/imagenet/{train,val}/<wnid>/*.JPEG
task = 'classification'
dataset_name = 'imagenet'
data_root = 'data/imagenet'
primary_metric = 'cls/top1'
higher_is_better = True
custom_imports = dict(imports=['tasks.classification'], allow_failed_imports=False)

train_dataloader = dict(
    batch_size=128, num_workers=8, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageFolderDataset', data_root=data_root, split='train', image_size=224,
                 auto_augment='rand-m9-mstd0.5-inc1', re_prob=0.25))
val_dataloader = dict(
    batch_size=128, num_workers=8, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageFolderDataset', data_root=data_root, split='val', image_size=224))
test_dataloader = val_dataloader
val_evaluator = dict(type='ClassificationMetric')
test_evaluator = val_evaluator
