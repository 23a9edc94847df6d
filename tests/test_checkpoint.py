"""Checkpoints load without running code, survive a crash mid-save and carry the random state."""
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub, MMLogger

from tasks.common import DataFormatError, PlainCheckpointHook
from tasks.common.checkpoint import (LAST_CHECKPOINT, LOCK_NAME, SafeCheckpointHook,
                                     check_checkpoint, checkpoint_to_load, lock_work_dir,
                                     random_state, set_random_state)

CONFIG = "configs/classification/vit-mini_dropkey-dec_embedded.py"


class Call:
    """Pickles as the call ``func(*args)``: how a crafted checkpoint runs code when unpickled."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __call__(self):
        raise AssertionError("only pickled, never called")

    def __reduce__(self):
        return self.func, self.args


def touch_code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


def crafted_payloads(marker: Path) -> dict:
    """Objects whose unpickling creates ``marker``, by the routes known to work on mmengine."""
    builtins_of_a_function = Call(getattr, Call(getattr, HistoryBuffer, "__init__"), "__builtins__")
    evaluate = Call(Call(getattr, builtins_of_a_function, "get"), "eval")
    return {"reduce-os-system": Call(os.system, f"touch {marker}"),
            "getattr-historybuffer-eval": Call(evaluate, touch_code(marker))}


def write_crafted(path: Path, payload) -> Path:
    torch.save({"meta": {"epoch": 1, "iter": 1}, "state_dict": {},
                "message_hub": {"log_scalars": {"train/loss": payload}}}, path)
    return path


def test_checkpoint_round_trip_is_weights_only_and_exact(tmp_path):
    hub = MessageHub("round-trip")
    for step, loss in enumerate([2.5, 1.25, np.float32(0.5)]):
        hub.update_scalar("train/loss", loss, count=step + 1)
    hub.update_info("iter", np.int64(7), resumed=True)
    checkpoint = {"meta": {"epoch": 3, "seed": np.int64(0), "cfg": "x = 1"},
                  "message_hub": hub.state_dict(), "state_dict": {"w": torch.ones(2)}}
    PlainCheckpointHook().before_save_checkpoint(None, checkpoint)
    torch.save(checkpoint, tmp_path / "epoch_3.pth")

    loaded = torch.load(tmp_path / "epoch_3.pth", weights_only=True)
    PlainCheckpointHook().after_load_checkpoint(None, loaded)
    restored = MessageHub("restored")
    restored.load_state_dict(loaded["message_hub"])
    history, counts = restored.get_scalar("train/loss").data
    expected_history, expected_counts = hub.get_scalar("train/loss").data
    assert history.tolist() == expected_history.tolist()
    assert counts.tolist() == expected_counts.tolist()
    assert isinstance(restored.get_scalar("train/loss"), HistoryBuffer)
    assert restored.get_info("iter") == 7 and loaded["meta"]["seed"] == 0


def test_config_string_of_a_checkpoint_is_dropped_unread():
    checkpoint = {"meta": {"config": "import os\nos.system('false')\n", "epoch": 1}}
    PlainCheckpointHook().after_load_checkpoint(None, checkpoint)
    assert checkpoint["meta"] == {"epoch": 1}


@pytest.mark.parametrize("route", ["reduce-os-system", "getattr-historybuffer-eval"])
def test_crafted_checkpoint_is_refused_without_running(tmp_path, route):
    marker = tmp_path / "ran"
    path = write_crafted(tmp_path / "crafted.pth", crafted_payloads(marker)[route])
    refused = "GLOBAL posix.system" if route == "reduce-os-system" else "GLOBAL getattr"
    with pytest.raises(DataFormatError, match=f"checkpoint: refused .*{refused}"):
        check_checkpoint(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: a full unpickler runs it
    assert marker.exists()


def test_unreadable_checkpoint_is_a_data_error(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(DataFormatError, match="empty.pth: checkpoint: not a torch checkpoint"):
        check_checkpoint(tmp_path / "empty.pth")
    with pytest.raises(DataFormatError, match="missing.pth: checkpoint: file not found"):
        check_checkpoint(tmp_path / "missing.pth")


def test_checkpoint_to_load_follows_load_from_and_resume(tmp_path):
    (tmp_path / "epoch_2.pth").write_bytes(b"")
    assert checkpoint_to_load({"load_from": "a.pth", "resume": False}, tmp_path) == "a.pth"
    assert checkpoint_to_load({"load_from": "a.pth", "resume": True}, tmp_path) == "a.pth"
    assert checkpoint_to_load({"load_from": "https://host/a.pth"}, tmp_path) is None
    assert checkpoint_to_load({"resume": True}, tmp_path) is None  # nothing saved yet
    (tmp_path / LAST_CHECKPOINT).write_text(str(tmp_path / "epoch_2.pth"))
    assert checkpoint_to_load({"resume": True}, tmp_path) == str(tmp_path / "epoch_2.pth")
    (tmp_path / LAST_CHECKPOINT).write_text(str(tmp_path / "epoch_3.pth"))
    with pytest.raises(DataFormatError, match="last_checkpoint: checkpoint: names .*epoch_3.pth"):
        checkpoint_to_load({"resume": True}, tmp_path)


def test_second_writer_is_stopped_and_a_killed_writers_lock_is_taken_over(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time\n"
         "f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
         "f.write('4242\\n'); f.flush(); print('locked', flush=True); time.sleep(60)",
         str(tmp_path / LOCK_NAME)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(DataFormatError, match=r"\.run\.lock: lock: another run \(pid 4242\)"):
            lock_work_dir(tmp_path)
    finally:
        holder.kill()  # SIGKILL: the holder gets no chance to release anything
        holder.wait()
    handle = lock_work_dir(tmp_path)
    try:
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    finally:
        handle.close()


def test_random_state_round_trips_through_a_weights_only_load(tmp_path):
    torch.save(random_state(), tmp_path / "state.pth")
    expected = (torch.rand(4).tolist(), np.random.rand(4).tolist(),
                [random.random() for _ in range(4)], np.random.randn(3).tolist())
    set_random_state(torch.load(tmp_path / "state.pth", weights_only=True))
    assert (torch.rand(4).tolist(), np.random.rand(4).tolist(),
            [random.random() for _ in range(4)], np.random.randn(3).tolist()) == expected


class StubRunner:
    """What SafeCheckpointHook uses of a runner; ``save_checkpoint`` can die half-way."""

    def __init__(self, work_dir: Path, name: str, checkpoint=None):
        """A fresh run, or with ``checkpoint`` (a path) one resumed from it."""
        self.work_dir, self.max_epochs, self.world_size = str(work_dir), 4, 1
        self.message_hub = MessageHub.get_instance(name)
        self.logger = MMLogger.get_current_instance()
        self.epoch = self.iter = 0
        self.die_in_save = False
        if checkpoint is not None:
            saved = torch.load(checkpoint, weights_only=True)
            self.epoch, self.iter = saved["meta"]["epoch"], saved["meta"]["iter"]
            self.message_hub.update_info("keep_ckpt_ids", saved["keep_ckpt_ids"])

    def save_checkpoint(self, out_dir, filename, *args, meta, **kwargs):
        path = Path(out_dir) / filename
        path.write_bytes(b"half a checkpoint")
        if self.die_in_save:
            raise KeyboardInterrupt  # stands for the kill: nothing after this line runs
        torch.save({"meta": meta, "keep_ckpt_ids": self.message_hub.get_info("keep_ckpt_ids")},
                   path)

    def end_epoch(self, hook):
        """The hook calls of an epoch's end, in the order of mmengine's epoch loop."""
        self.iter += 10
        hook.after_train_epoch(self)
        self.epoch += 1
        hook.after_val(self)  # the checkpoint is written once the validation is over


def test_a_crash_inside_a_save_keeps_the_previous_checkpoint(tmp_path):
    runner = StubRunner(tmp_path, "crash-in-save")
    hook = SafeCheckpointHook(interval=1, max_keep_ckpts=1)
    hook.before_train(runner)
    runner.end_epoch(hook)
    assert (tmp_path / LAST_CHECKPOINT).read_text() == str(tmp_path / "epoch_1.pth")

    runner.die_in_save = True
    with pytest.raises(KeyboardInterrupt):
        runner.end_epoch(hook)
    assert (tmp_path / LAST_CHECKPOINT).read_text() == str(tmp_path / "epoch_1.pth")
    assert torch.load(tmp_path / "epoch_1.pth", weights_only=True)["meta"]["epoch"] == 1
    assert not (tmp_path / "epoch_2.pth").exists()

    runner = StubRunner(tmp_path, "resumed-after-crash", checkpoint=tmp_path / "epoch_1.pth")
    assert (runner.epoch, runner.iter) == (1, 10)
    hook = SafeCheckpointHook(interval=1, max_keep_ckpts=1)
    hook.before_train(runner)  # clears what the killed run left half-written
    runner.end_epoch(hook)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_2.pth", LAST_CHECKPOINT]
    assert (tmp_path / LAST_CHECKPOINT).read_text() == str(tmp_path / "epoch_2.pth")
    saved = torch.load(tmp_path / "epoch_2.pth", weights_only=True)["meta"]
    assert (saved["epoch"], saved["iter"], len(saved["random_states"])) == (2, 20, 1)


def test_an_epoch_without_validation_is_saved_before_the_next_one_starts(tmp_path):
    runner = StubRunner(tmp_path, "no-validation")
    hook = SafeCheckpointHook(interval=1)
    hook.before_train(runner)
    runner.iter += 10
    hook.after_train_epoch(runner)
    runner.epoch += 1
    assert not (tmp_path / "epoch_1.pth").exists()  # a validation may still follow
    hook.before_train_epoch(runner)
    assert (tmp_path / LAST_CHECKPOINT).read_text() == str(tmp_path / "epoch_1.pth")
    runner.iter += 10
    hook.after_train_epoch(runner)
    runner.epoch += 1
    hook.after_train(runner)
    assert (tmp_path / LAST_CHECKPOINT).read_text() == str(tmp_path / "epoch_2.pth")
    assert (tmp_path / "epoch_1.pth").exists()  # max_keep_ckpts=-1 keeps every checkpoint


def crafted_route_args(route: str, path: Path, work_dir: Path) -> tuple:
    """``tools/<script>`` arguments that make a run load ``path`` by ``route``."""
    if route == "resume-auto":
        work_dir.mkdir()
        (work_dir / LAST_CHECKPOINT).write_text(str(path))
    return {"resume-path": ("train.py", CONFIG, "--resume", path),
            "resume-auto": ("train.py", CONFIG, "--resume"),
            "load-from": ("train.py", CONFIG, "--cfg-options", f"load_from={path}"),
            "test": ("test.py", CONFIG, path)}[route] + ("--work-dir", work_dir)


@pytest.mark.slow
@pytest.mark.parametrize("route", ["resume-path", "resume-auto", "load-from", "test"])
@pytest.mark.parametrize("payload", ["reduce-os-system", "getattr-historybuffer-eval"])
def test_tools_refuse_a_crafted_checkpoint_with_one_line(tmp_path, run_tool, route, payload):
    marker = tmp_path / "ran"
    path = write_crafted(tmp_path / "crafted.pth", crafted_payloads(marker)[payload])
    result = run_tool(*crafted_route_args(route, path, tmp_path / "work"))
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: {path}: checkpoint: refused by the weights-only unpickler: ")
    assert not marker.exists()
    assert not (tmp_path / "work" / "report.json").exists()
