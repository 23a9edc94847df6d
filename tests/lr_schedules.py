"""Learning-rate schedules of configs, as built by the Runner and as expected by hand."""
import math

from mmengine.config import Config
from mmengine.runner import Runner


def expected_schedule(lr, start_factor, warm_up, eta_min, epochs) -> list:
    """Per epoch: linear warm-up from ``start_factor * lr`` reaching ``lr`` in its last epoch,
    then cosine annealing from ``lr`` towards ``eta_min`` over the remaining epochs (mmengine
    stops it one step short of ``eta_min``)."""
    cosine = epochs - warm_up
    return ([lr * (start_factor + (1 - start_factor) * t / (warm_up - 1)) for t in range(warm_up)]
            + [eta_min + (lr - eta_min) * (1 + math.cos(math.pi * t / cosine)) / 2
               for t in range(cosine)])


def lr_per_iteration(cfg: Config) -> list:
    """The learning rate of every iteration of ``cfg``'s run, from the train loop, optimiser and
    schedulers built as ``Runner.train()`` builds them (all stepped per iteration)."""
    runner = Runner.from_cfg(cfg)
    loop = runner.train_loop  # built first: schedulers without an end run to its max_epochs
    runner.optim_wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
    schedulers = runner.build_param_scheduler(cfg.param_scheduler)
    assert not any(scheduler.by_epoch for scheduler in schedulers)
    curve = []
    for _ in range(loop.max_iters):
        curve.append(runner.optim_wrapper.get_lr()["lr"][0])
        for scheduler in schedulers:
            scheduler.step()
    return curve
