"""A training run killed with SIGKILL at any instant resumes to the uninterrupted run's metrics.

Each test trains the classification config for 4 epochs (the shortest its 3-epoch warm-up
allows) with a checkpoint and a validation every epoch, on CPU with one thread.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tasks.common.checkpoint import LAST_CHECKPOINT, STAGING_SUFFIX, check_checkpoint

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/classification/vit-mini_dropkey-dec_embedded.py"
SHORT_RUN = ("--cfg-options", "train_cfg.max_epochs=4", "train_cfg.val_interval=1",
             "default_hooks.checkpoint.interval=1")

pytestmark = pytest.mark.slow


def start(tool: str, work_dir: Path, *args) -> subprocess.Popen:
    """``tools/<tool>`` in the background, its output appended to WORK_DIR.log."""
    work_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{work_dir}.log", "a") as log:
        return subprocess.Popen(
            [sys.executable, str(REPO / "tools" / tool), CONFIG, *map(str, args),
             "--work-dir", str(work_dir)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            env=dict(os.environ, OMP_NUM_THREADS="1"))


def train(work_dir: Path, *args) -> subprocess.Popen:
    return start("train.py", work_dir, *args, *SHORT_RUN)


def finish(process: subprocess.Popen, work_dir: Path) -> dict:
    assert process.wait(timeout=600) == 0, Path(f"{work_dir}.log").read_text()[-3000:]
    return json.loads((work_dir / "report.json").read_text())


def wait_until(condition, process: subprocess.Popen, what: str) -> None:
    while not condition():
        assert process.poll() is None, f"the run ended before {what}"
        time.sleep(0.02)


def read_some(pipe: int) -> bool:
    try:
        return len(os.read(pipe, 1 << 16)) > 0
    except BlockingIOError:  # a writer has the pipe open but has not written yet
        return False


def names_checkpoint(work_dir: Path, name: str):
    record = work_dir / LAST_CHECKPOINT
    return lambda: record.is_file() and record.read_text().endswith(f"/{name}")


def assert_resumable(work_dir: Path) -> None:
    """What a kill must leave: no record, or a record naming a complete, safe checkpoint."""
    record = work_dir / LAST_CHECKPOINT
    if record.is_file():
        check_checkpoint(record.read_text().strip())


def outcome(report: dict) -> dict:
    """What an exact resume reproduces: the metrics and every curve but the timings."""
    return {"metrics": report["metrics"], "curves": {
        name: curve for name, curve in report["curves"].items() if not name.endswith("time")}}


def with_config_string(checkpoint: Path, out: Path, marker: Path) -> Path:
    """``checkpoint`` with a ``meta['config']`` whose execution would create ``marker``."""
    saved = torch.load(checkpoint, weights_only=True)
    saved["meta"]["config"] = f"open({str(marker)!r}, 'w').close()\n"
    torch.save(saved, out)
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("uninterrupted") / "work"
    report = finish(train(work_dir), work_dir)
    return work_dir, report


def test_killed_after_epoch_2_resumes_exactly_without_running_its_config(uninterrupted, tmp_path):
    work_dir, marker = tmp_path / "work", tmp_path / "ran"
    first = train(work_dir)
    wait_until(names_checkpoint(work_dir, "epoch_1.pth"), first, "epoch 1's checkpoint")
    first.send_signal(signal.SIGSTOP)  # holds its lock while a second writer tries the work dir
    second = train(work_dir)
    assert second.wait(timeout=600) == 2
    assert Path(f"{work_dir}.log").read_text().strip().splitlines()[-1].startswith(
        f"error: {work_dir / '.run.lock'}: lock: another run (pid {first.pid})")
    first.send_signal(signal.SIGCONT)
    wait_until(names_checkpoint(work_dir, "epoch_2.pth"), first, "epoch 2's checkpoint")
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert_resumable(work_dir)
    with_config_string(work_dir / "epoch_2.pth", work_dir / "epoch_2.pth", marker)

    resumed = finish(train(work_dir, "--resume"), work_dir)  # takes over the dead run's lock
    assert "resumed epoch: 2," in Path(f"{work_dir}.log").read_text()
    assert not marker.exists()
    assert outcome(resumed) == outcome(uninterrupted[1])


def test_killed_inside_a_save_and_at_random_instants_resumes_exactly(uninterrupted, tmp_path):
    work_dir = tmp_path / "work"
    first = train(work_dir, "--resume")  # nothing to resume yet: a fresh start
    wait_until(names_checkpoint(work_dir, "epoch_1.pth"), first, "epoch 1's checkpoint")
    # Epoch 2's checkpoint is staged into a pipe that is read only a little: once bytes come
    # out, the run is blocked in the middle of writing it.
    staging = work_dir / f".epoch_2.pth{STAGING_SUFFIX}"
    os.mkfifo(staging)
    pipe = os.open(staging, os.O_RDONLY | os.O_NONBLOCK)
    try:
        wait_until(lambda: read_some(pipe), first, "epoch 2's save")
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        os.close(pipe)
    assert (work_dir / LAST_CHECKPOINT).read_text().endswith("/epoch_1.pth")
    assert_resumable(work_dir)

    rng, log = random.Random(15), Path(f"{work_dir}.log")
    for _ in range(2):  # killed at a random instant of its first seconds of training
        resumes = log.read_text().count("resumed epoch:")
        attempt = train(work_dir, "--resume")
        wait_until(lambda: log.read_text().count("resumed epoch:") > resumes, attempt, "resuming")
        time.sleep(rng.uniform(0.0, 6.0))
        attempt.send_signal(signal.SIGKILL)
        attempt.wait()
        assert_resumable(work_dir)
    resumed = finish(train(work_dir, "--resume"), work_dir)
    assert "resumed epoch: 1," in Path(f"{work_dir}.log").read_text()
    assert outcome(resumed) == outcome(uninterrupted[1])


def test_resume_of_a_finished_run_and_test_evaluate_without_running_its_config(
        uninterrupted, tmp_path):
    work_dir, report = uninterrupted
    marker = tmp_path / "ran"
    crafted = with_config_string(work_dir / "epoch_4.pth", tmp_path / "epoch_4.pth", marker)

    resumed = finish(train(tmp_path / "resumed", "--resume", crafted), tmp_path / "resumed")
    assert outcome(resumed) == outcome(report) and resumed["epochs"] == 4
    tested = finish(start("test.py", tmp_path / "tested", crafted), tmp_path / "tested")
    assert tested["metrics"] == report["metrics"]
    assert not marker.exists()
