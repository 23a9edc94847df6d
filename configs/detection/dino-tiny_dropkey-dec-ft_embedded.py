_base_ = ['../_base_/detection/dino-tiny_shapes.py', '../_base_/methods/dropkey-dec-ft.py']
# The fine-tune tail is ~10 % of the schedule and part of the same total epochs: 12 epochs
# with DropKey, then the last 2 without it (14 in all, as every other variant trains).
dropkey = dict(variant='dropkey-dec-ft', finetune_epochs=2)
