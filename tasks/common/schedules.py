"""Facts about a config's training schedule that tools and tests need."""
from __future__ import annotations

from mmengine.config import Config


def shortest_epochs(cfg: Config) -> int:
    """The fewest epochs ``cfg``'s schedule allows: one past the last by-epoch ``begin``, and
    one past a fine-tune tail (``dropkey.finetune_epochs``).

    Schedulers without an ``end`` run to ``train_cfg.max_epochs``, and mmengine refuses one that
    would end where it begins (a cosine after a three-epoch warm-up needs four epochs).
    """
    schedulers = cfg.get("param_scheduler") or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    tail = (cfg.get("dropkey") or {}).get("finetune_epochs") or 0
    return max([1, tail + 1] + [s.get("begin", 0) + 1 for s in schedulers
                                if s.get("by_epoch", True) and "end" not in s])
