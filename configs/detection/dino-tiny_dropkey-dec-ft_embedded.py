_base_ = ['../_base_/detection/dino-tiny_shapes.py', '../_base_/methods/dropkey-dec-ft.py']
# The fine-tune tail is 1/7 of the schedule and part of the same total epochs: 24 epochs
# with DropKey, then the last 4 without it (28 in all, as every other variant trains).
dropkey = dict(variant='dropkey-dec-ft', finetune_epochs=4)
