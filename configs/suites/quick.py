# Quick suite: every task, `none` vs the paper's `dropkey-dec`, one seed, shortened schedules.
# It demonstrates the whole pipeline (train -> report.json -> aggregated report) in <= 20 min on
# 2 CPU cores (<= 2.5 min per run); with one seed it does not establish significance.
#   python tools/run_suite.py quick --work-dir work_dirs/suite-quick --jobs 2
# `epochs=N` trains N epochs (warm-up and cosine follow), then evaluates once, at the end.
variants = ['none', 'dropkey-dec']
seeds = [0]
tasks = dict(
    classification=dict(epochs=12),  # of 60
    detection=dict(epochs=3),  # of 28
    hoi=dict(epochs=10),  # of 80
    mesh=dict(epochs=8),  # of 30
)
