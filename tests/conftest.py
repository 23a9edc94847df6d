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
    """The fewest epochs a config file's schedule allows (``tasks.common.schedules``)."""
    from mmengine.config import Config

    from tasks.common.schedules import shortest_epochs as of_config
    return lambda config: of_config(Config.fromfile(config))
