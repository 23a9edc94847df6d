"""Checkpoints that are safe to load: nothing in them can run code when they are read."""
from __future__ import annotations

import numpy as np
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.registry import HOOKS


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

