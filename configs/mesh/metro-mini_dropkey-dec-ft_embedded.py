_base_ = ['../_base_/mesh/metro-mini_generated.py', '../_base_/methods/dropkey-dec-ft.py']
# The fine-tune tail is ~10 % of the schedule and part of the same total epochs: 27 epochs
# with DropKey, then the last 3 without it (30 in all, as every other variant trains).
dropkey = dict(variant='dropkey-dec-ft', finetune_epochs=3)
