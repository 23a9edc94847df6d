# Standard suite: every task on its full embedded schedule, the five variants (+ the structured
# `dropkey-block` for classification, whose key grid it needs), three seeds for paired intervals.
#   python tools/run_suite.py standard --work-dir work_dirs/suite-standard --jobs 2
variants = ['none', 'attndrop', 'dropkey-const', 'dropkey-dec', 'dropkey-inc']
seeds = [0, 1, 2]
tasks = dict(
    classification=dict(variants=variants + ['dropkey-block']),
    detection=dict(),
    hoi=dict(),
    mesh=dict(),
)
