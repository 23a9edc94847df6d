import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_tool():
    """Run ``python tools/<script> args...`` from the repository root; returns CompletedProcess."""
    def run(script, *args, timeout=600, env=None):
        env = dict(env or os.environ)
        env.setdefault("OMP_NUM_THREADS", "2")
        return subprocess.run([sys.executable, str(REPO / "tools" / script), *map(str, args)],
                              cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    return run


@pytest.fixture
def shortest_epochs():
    """The fewest epochs a config's schedule allows: one past the last by-epoch ``begin``.

    Schedulers without an ``end`` run to ``max_epochs``, and mmengine refuses one that would end
    where it begins (a cosine after a three-epoch warm-up needs four epochs).
    """
    from mmengine.config import Config

    def epochs(config) -> int:
        schedulers = Config.fromfile(config).get("param_scheduler") or []
        if isinstance(schedulers, dict):
            schedulers = [schedulers]
        return max([1] + [s.get("begin", 0) + 1 for s in schedulers
                          if s.get("by_epoch", True) and "end" not in s])
    return epochs
