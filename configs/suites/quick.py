# Quick suite: every task, `none` vs the paper's `dropkey-dec`, one seed, shortened schedules.
# It demonstrates the whole pipeline (train -> report.json -> aggregated report) in <= 20 min on
# 2 CPU cores (<= 2.5 min per run); with one seed it does not establish significance.
#   python tools/run_suite.py quick --work-dir work_dirs/suite-quick
methods = ['none', 'dropkey-dec']
seeds = [0]
tasks = dict(
    # 12 of 60 epochs, the cosine schedule compressed to match, one evaluation at the end.
    classification=dict(cfg_options={
        'train_cfg.max_epochs': 12, 'train_cfg.val_interval': 12,
        'param_scheduler.1.end': 12, 'param_scheduler.1.T_max': 9,
        'default_hooks.checkpoint.interval': 12}),
    # 3 of 14 epochs, cosine compressed to match, one evaluation at the end.
    detection=dict(cfg_options={
        'train_cfg.max_epochs': 3, 'train_cfg.val_interval': 3,
        'param_scheduler.1.end': 3, 'param_scheduler.1.T_max': 3,
        'default_hooks.checkpoint.interval': 3}),
    # 10 of 40 epochs, cosine compressed to match, one evaluation at the end.
    hoi=dict(cfg_options={
        'train_cfg.max_epochs': 10, 'train_cfg.val_interval': 10,
        'param_scheduler.1.end': 10, 'param_scheduler.1.T_max': 8,
        'default_hooks.checkpoint.interval': 10}),
    # 8 of 30 epochs, evaluated once at the end.
    mesh=dict(cfg_options={'train_cfg.max_epochs': 8, 'train_cfg.val_interval': 8}),
)
