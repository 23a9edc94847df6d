_base_ = ['../_base_/classification/vit-mini_digits.py', '../_base_/methods/dropkey-dec-ft.py']
# The fine-tune tail is ~10 % of the schedule and part of the same total epochs: 54 epochs
# with DropKey, then the last 6 without it (60 in all, as every other variant trains).
dropkey = dict(variant='dropkey-dec-ft', finetune_epochs=6)
