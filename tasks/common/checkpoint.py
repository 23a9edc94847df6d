"""Checkpoints that are safe to load, survive a kill at any instant and resume a run exactly."""
from __future__ import annotations

import copy
import fcntl
import os
import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.runner import BaseLoop
from mmengine.logging import HistoryBuffer
from mmengine.registry import HOOKS

from .files import DataFormatError, write_atomic
from .hooks import unwrap

LOCK_NAME = ".run.lock"
STAGING_SUFFIX = ".partial"  # a checkpoint being written; renamed into place when complete
LAST_CHECKPOINT = "last_checkpoint"  # the file in which mmengine records the latest checkpoint


def _plain(value):
    """``value`` with numpy arrays and scalars turned into lists and Python numbers."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return type(value)((k, _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _buffer_to_plain(buffer: HistoryBuffer) -> dict:
    history, counts = buffer.data
    return {"log_history": history.tolist(), "count_history": counts.tolist(),
            "max_length": buffer.max_length}


@HOOKS.register_module()
class PlainCheckpointHook(Hook):
    """Keeps checkpoints loadable by torch's weights-only unpickler, with nothing allow-listed.

    mmengine saves the message hub's ``HistoryBuffer`` objects and numpy values, which
    ``torch.load(weights_only=True)`` refuses unless callables are allow-listed; and on resume
    it executes a ``meta['config']`` string as Python (its own checkpoints keep the config text
    under ``meta['cfg']``, which nothing executes). Here the buffers are saved as plain lists and
    rebuilt after loading, and a ``meta['config']`` is dropped unread.
    """

    priority = "VERY_LOW"  # after every other hook has added what it saves

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint["meta"] = _plain(checkpoint.get("meta", {}))
        hub = checkpoint.get("message_hub")
        if hub is not None:
            hub["log_scalars"] = {key: _buffer_to_plain(buffer)
                                  for key, buffer in hub["log_scalars"].items()}
            hub["runtime_info"] = _plain(hub["runtime_info"])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.get("meta", {}).pop("config", None)
        hub = checkpoint.get("message_hub")
        if hub is not None:
            hub["log_scalars"] = {
                key: HistoryBuffer(value["log_history"], value["count_history"],
                                   value["max_length"]) if isinstance(value, dict) else value
                for key, value in hub["log_scalars"].items()}


def _refusal(err: pickle.UnpicklingError) -> str:
    """The sentence of torch's weights-only error that says what was refused."""
    text = str(err).rsplit("WeightsUnpickler error:", 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip()
             .startswith(("Weights only load failed", "Check the documentation", "(1)", "(2)"))]
    return lines[0].split(". ")[0].rstrip(".") if lines else "unknown reason"


def check_checkpoint(path) -> None:
    """Raise DataFormatError unless torch's weights-only unpickler accepts the file ``path``.

    The unpickler runs nothing: a file that needs any callable beyond torch's own tensor
    rebuilders is refused. Tensor data is memory-mapped, not read, so the check is cheap.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "checkpoint", "file not found")
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        raise DataFormatError(path, "checkpoint", "refused by the weights-only unpickler: "
                              + _refusal(err)) from None
    except (RuntimeError, EOFError, ValueError) as err:
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataFormatError(path, "checkpoint", f"not a torch checkpoint: {first_line}") from None


def check_fits_model(checkpoint: dict, model: torch.nn.Module, source) -> None:
    """Raise DataFormatError unless ``checkpoint['state_dict']`` has exactly the parameters and
    buffers of ``model``, with their shapes (mmengine loads with ``strict=False`` and only logs
    a mismatch, which would evaluate a partly random model, e.g. another task's checkpoint)."""
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, dict):
        raise DataFormatError(source, "state_dict", "missing or not a dict")
    state = {re.sub(r"^module\.", "", key): value for key, value in state.items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(key for key in set(expected) & set(state)
                        if tuple(getattr(state[key], "shape", ())) != tuple(expected[key].shape))
    problems = [f"{len(keys)} {what} (e.g. {keys[0]})" for what, keys in (
        ("missing keys", missing), ("unexpected keys", unexpected),
        ("keys of another shape", mismatched)) if keys]
    if problems:
        raise DataFormatError(source, "state_dict", "does not fit the model of the config: "
                              + ", ".join(problems))


def checkpoint_to_load(cfg, work_dir) -> Optional[str]:
    """The local checkpoint a run of ``cfg`` loads: ``load_from``, or with ``resume`` and no
    ``load_from`` the one that ``WORK_DIR/last_checkpoint`` names; None if there is none."""
    load_from = cfg.get("load_from")
    if cfg.get("resume", False) and load_from is None:
        record = Path(work_dir) / LAST_CHECKPOINT
        if not record.is_file():
            return None
        named = record.read_text().strip()
        if not Path(named).is_file():
            raise DataFormatError(record, "checkpoint", f"names {named}, which does not exist")
        return named
    if load_from is None or "://" in str(load_from):  # remote files: torch.load's own default
        return None
    return str(load_from)


def lock_work_dir(work_dir):
    """An open file holding an exclusive ``flock`` on ``WORK_DIR/.run.lock``.

    The kernel releases the lock when its process ends, however it ends, so the lock of a
    killed run is free for the next one; a live holder makes this a DataFormatError.
    """
    path = Path(work_dir) / LOCK_NAME
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise DataFormatError(path, "lock", f"another run (pid {holder}) is writing into this "
                              "work dir; wait for it to end or use another --work-dir") from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def random_state() -> dict:
    """The state of every global generator a run draws from, in types the weights-only
    unpickler loads: torch (CPU and, when present, CUDA), numpy and Python's ``random``."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": [kind, keys.tolist(), position, has_gauss, cached_gaussian],
             "python": [version, list(internal), gauss_next]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict) -> None:
    """Put every global generator back in the ``state`` that ``random_state`` returned."""
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss,
                         cached_gaussian))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync(path, flags=os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same options) made safe to load, to kill and to resume.

    - Before anything is loaded, the checkpoint the run will load (``load_from``, ``--resume``
      or the latest in the work dir) must pass torch's weights-only unpickler; a refused file
      is a DataFormatError naming it, before mmengine reads it.
    - The main process holds a lock on the work dir for the run: a second run writing into
      it stops with a DataFormatError.
    - A checkpoint is written to a staging file, flushed to disk and renamed into place; only
      then does ``last_checkpoint`` name it, and only then are outdated checkpoints removed
      (mmengine removes the oldest first), so a kill at any instant leaves a checkpoint that
      ``last_checkpoint`` names and ``--resume`` continues from.
    - An epoch's checkpoint is written when the epoch is over, after its validation if one
      follows, with the random state of every rank; a resumed run restores it before training,
      so it draws the numbers the uninterrupted run draws (validation draws from the global
      torch generator too: each data loader iterator takes a seed from it).
    - A resumed run with nothing left to train evaluates its checkpoint, so the run still
      ends with metrics (and a report) instead of failing.
    """

    priority = "LOWEST"  # releases the lock after every other hook's after_run (the report)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lock = None
        self._pending_meta: Optional[dict] = None
        self._loaded_random_states: Optional[list] = None
        self._first_iter = 0

    def before_run(self, runner) -> None:
        path = checkpoint_to_load(runner.cfg, runner.work_dir)
        if path is not None:
            check_checkpoint(path)
        if is_main_process():
            self._lock = lock_work_dir(runner.work_dir)

    def after_run(self, runner) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded_random_states = checkpoint.get("meta", {}).get("random_states")
        if not isinstance(runner._train_loop, BaseLoop):  # test or val: the weights must fit
            check_fits_model(checkpoint, unwrap(runner.model),
                             runner.cfg.get("load_from") or "checkpoint")

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process():
            for staging in Path(self.out_dir).glob(f".*{STAGING_SUFFIX}"):
                staging.unlink()  # left by a killed run; the lock says no save is under way
        self._first_iter = runner.iter
        resumed = runner.iter > 0  # a checkpoint given by load_from starts at iteration 0
        if resumed and self._loaded_random_states is not None:
            if len(self._loaded_random_states) == runner.world_size:
                set_random_state(self._loaded_random_states[get_rank()])
            else:
                runner.logger.warning(
                    f"the checkpoint holds the random state of {len(self._loaded_random_states)} "
                    f"processes, this run has {runner.world_size}: its random numbers will differ "
                    "from those of an uninterrupted run")

    def _save_checkpoint(self, runner) -> None:
        if not self.by_epoch:
            super()._save_checkpoint(runner)
            return
        self._pending_meta = dict(epoch=runner.epoch + 1, iter=runner.iter)

    def _save_pending(self, runner) -> None:
        if self._pending_meta is not None:
            meta, self._pending_meta = self._pending_meta, None
            self._save_checkpoint_with_step(runner, meta["epoch"], meta)

    def after_val(self, runner) -> None:
        self._save_pending(runner)

    def before_train_epoch(self, runner) -> None:
        self._save_pending(runner)  # the previous epoch had no validation

    def after_train(self, runner) -> None:
        self._save_pending(runner)
        super().after_train(runner)
        if runner.iter == self._first_iter and runner.iter > 0 and runner.val_loop is not None:
            # the checkpoint's history already holds this evaluation: it is not logged twice
            history = copy.deepcopy(dict(runner.message_hub.log_scalars))
            runner.val_loop.run()
            runner.message_hub.log_scalars.clear()
            runner.message_hub.log_scalars.update(history)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        meta = dict(meta, random_states=all_gather_object(random_state()))
        outdated = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        staging = f".{filename}{STAGING_SUFFIX}"
        runner.save_checkpoint(
            self.out_dir, staging, self.file_client_args, save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
            backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        out_dir = Path(self.out_dir)
        _fsync(out_dir / staging)
        os.replace(out_dir / staging, out_dir / filename)
        _fsync(out_dir, os.O_RDONLY | os.O_DIRECTORY)
        write_atomic(Path(runner.work_dir) / LAST_CHECKPOINT, self.last_ckpt.encode())
        for old_step in outdated:
            (out_dir / self.filename_tmpl.format(old_step)).unlink(missing_ok=True)
