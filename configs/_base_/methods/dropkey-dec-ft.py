# The `dropkey-dec-ft` variant (tasks/common/variants.py): dropkey-dec, then a fine-tune tail of
# `finetune_epochs` epochs with the regulariser off. The tail belongs to the task's schedule, so
# each task's config sets it (about 10 % of train_cfg.max_epochs, within the same total epochs).
dropkey = dict(variant='dropkey-dec-ft')
