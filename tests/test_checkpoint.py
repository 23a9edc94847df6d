"""Checkpoints round-trip through torch's weights-only unpickler with nothing allow-listed."""
import numpy as np
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from tasks.common import PlainCheckpointHook


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
