# VOLO-D1 at 224 px: the DeiT-S recipe with VOLO's learning rate (no token labelling).
_base_ = ['deit-s_imagenet.py']

model = dict(model_name='volo_d1_224', drop_path_rate=0.1)
optim_wrapper = dict(optimizer=dict(lr=1.6e-3))
