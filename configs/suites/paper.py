# Paper-scale suite: the four tasks' paper-scale configs on real data (README "Running on real
# data"), `none` vs the paper's `dropkey-dec` (+ attention dropout where configured), 3 seeds.
# Every run is 8 GPUs on one node, one task per GPU (`--launcher slurm`), as the configs' batch
# sizes assume (DeiT-S 8 x 128, DETR and QPIC 8 x 2); 10 CPUs per task for 8 loader workers.
# Runs longer than the time limit requeue themselves and resume from their latest checkpoint.
#   python tools/run_suite.py paper --work-dir work_dirs/paper --executor slurm --partition gpu
variants = ['none', 'dropkey-dec']
seeds = [0, 1, 2]
resources = dict(gpus_per_node=8, nodes=1, cpus_per_task=10, mem_gb=320, time_min=24 * 60)
tasks = dict(
    classification=dict(variants=['none', 'attndrop', 'dropkey-dec'],
                        config='configs/classification/deit-s_{variant}_imagenet.py'),
    detection=dict(variants=['none', 'attndrop', 'dropkey-dec'],
                   config='configs/detection/detr-r50_{variant}_coco.py'),
    hoi=dict(config='configs/hoi/qpic-r50_{variant}_hico.py'),
    mesh=dict(config='configs/mesh/metro-r50_{variant}_3dpw.py'),
)
