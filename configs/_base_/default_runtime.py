# Runtime shared by every task: hooks, logging (text + TensorBoard), checkpoints, seeding.
default_scope = 'mmengine'
default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    logger=dict(type='LoggerHook', interval=20),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='SafeCheckpointHook', interval=1, max_keep_ckpts=1),
)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),  # tools switch to gloo on machines without CUDA
)
visualizer = dict(
    type='Visualizer',
    vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
log_processor = dict(by_epoch=True, window_size=20)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
# What makes a run a benchmark run (tasks/common): the attention regulariser of `dropkey`
# (a variant of configs/_base_/methods; none when absent) injected where `dropkey_scope` says,
# checkpoints that load without running code, and report.json with the per-layer attention
# entropy of every evaluation. `monte_carlo = dict(samples=K)` (absent: off) adds to the final
# evaluation and to every test the mean of K passes with the regulariser on (mc/<metric>).
custom_hooks = [
    dict(type='DropKeyHook'),
    dict(type='MonteCarloEvalHook'),
    # batch-norm statistics averaged over the processes after each epoch (nothing with one), so
    # validation and the checkpoint use the same statistics on every rank
    dict(type='SyncBuffersHook'),
    dict(type='PlainCheckpointHook'),
    dict(type='BenchReportHook', record_entropy=True),
]
