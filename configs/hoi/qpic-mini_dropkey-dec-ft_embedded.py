_base_ = ['../_base_/hoi/qpic-mini_hico-gen.py', '../_base_/methods/dropkey-dec-ft.py']
# The fine-tune tail is ~10 % of the schedule and part of the same total epochs: 72 epochs
# with DropKey, then the last 8 without it (80 in all, as every other variant trains).
dropkey = dict(variant='dropkey-dec-ft', finetune_epochs=8)
