# Spread suite: how much the seed alone moves each embedded recipe. `none` only, seeds 0-4, full
# schedules: the standard deviation of `none` over five seeds is the instrument's noise, which
# a recipe change must shrink without favouring any method (issue 16, item 6). With the per-run
# times listed in ablation.py: 20 runs, 15 950 s of one-thread runs, about 2 h 15 min at --jobs 2
# on 2 cores.
#   python tools/run_suite.py spread --work-dir work_dirs/suite-spread --jobs 2
variants = ['none']
seeds = [0, 1, 2, 3, 4]
tasks = dict(classification=dict(), detection=dict(), hoi=dict(), mesh=dict())
