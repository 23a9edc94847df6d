"""Layer-wise drop-ratio schedules.

Convention: layer 0 is the layer closest to the input. ``linear_decrease`` runs from ``start``
(default: the base ratio) at layer 0 to ``end`` (default: 0) at the last layer, which is the
paper's choice; ``linear_increase`` runs from ``start`` (default 0) to ``end`` (default: the base
ratio). ``constant`` uses the base ratio everywhere. A single layer gets ``start``.
"""
from __future__ import annotations

from typing import Optional, Sequence

SCHEDULES = ("constant", "linear_decrease", "linear_increase", "explicit")


def layer_drop_ratios(
    base: float,
    num_layers: int,
    schedule: str = "linear_decrease",
    *,
    start: Optional[float] = None,
    end: Optional[float] = None,
    ratios: Optional[Sequence[float]] = None,
) -> list[float]:
    """Return one drop ratio per layer, in depth order."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    if schedule == "explicit" or ratios is not None:
        if ratios is None:
            raise ValueError("schedule 'explicit' needs `ratios`")
        out = [float(r) for r in ratios]
        if len(out) != num_layers:
            raise ValueError(f"explicit schedule has {len(out)} ratios for {num_layers} layers")
    elif schedule == "constant":
        out = [float(base)] * num_layers
    elif schedule in ("linear_decrease", "linear_increase"):
        decreasing = schedule == "linear_decrease"
        first = float(start if start is not None else (base if decreasing else 0.0))
        last = float(end if end is not None else (0.0 if decreasing else base))
        steps = max(num_layers - 1, 1)
        out = [first + (last - first) * i / steps for i in range(num_layers)]
    else:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
    for r in out:
        if not 0.0 <= r < 1.0:
            raise ValueError(f"drop ratios must lie in [0, 1), got {r}")
    return out
