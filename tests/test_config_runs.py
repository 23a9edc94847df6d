"""A config alone is the run: ``Runner.from_cfg(cfg).train()/.test()`` in Python and
``tools/train.py``/``tools/test.py`` give the same attention layers, report fields and metrics.

CPU training from the same seed is deterministic, so everything but wall-clock figures must be
equal, bit for bit, including the trained weights. One embedded config per task, each on the
shortest schedule it allows.
"""
import os
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from tasks.common.report import REPORT_NAME, read_report
from tasks.common.suite import epochs_options, format_option

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "classification": "configs/classification/vit-mini_dropkey-dec_embedded.py",
    "detection": "configs/detection/dino-tiny_dropkey-dec_embedded.py",
    "hoi": "configs/hoi/qpic-mini_dropkey-dec_embedded.py",
    "mesh": "configs/mesh/metro-mini_dropkey-dec_embedded.py",
}
WALL_CLOCK_FIELDS = {"train_seconds", "train_samples_per_second", "created", "work_dir"}
WALL_CLOCK_CURVES = {"time", "data_time"}  # IterTimerHook's, as train/time, val/time ...


def comparable(built: dict) -> dict:
    """A report without what differs between any two runs: times and the work dir."""
    kept = {key: value for key, value in built.items() if key not in WALL_CLOCK_FIELDS}
    kept["curves"] = {key: curve for key, curve in built["curves"].items()
                      if key.rsplit("/", 1)[-1] not in WALL_CLOCK_CURVES}
    return kept


def run_in_python(config: Path, options: dict, work_dir: Path, mode: str) -> dict:
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(options)
    cfg.work_dir = str(work_dir)
    getattr(Runner.from_cfg(cfg), mode)()  # train() or test()
    return read_report(work_dir / REPORT_NAME)


def run_tool_options(options: dict) -> list[str]:
    return ["--cfg-options", *(f"{key}={format_option(value)}" for key, value in options.items())]


def weights(checkpoint: Path) -> dict:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_run(in_python: dict, by_tool: dict) -> None:
    assert in_python["attention_layers"] == by_tool["attention_layers"]
    assert any(layer["method"] == "dropkey" for layer in in_python["attention_layers"])
    assert in_python["metrics"] == by_tool["metrics"]
    assert set(in_python) == set(by_tool)
    assert comparable(in_python) == comparable(by_tool)


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(CONFIGS))
def test_config_in_python_and_tools_give_the_same_run(task, run_tool, shortest_epochs, tmp_path):
    config = REPO / CONFIGS[task]
    epochs = shortest_epochs(config)
    # experiment_name keeps the in-process runs' loggers and message hubs apart.
    train_options = {**epochs_options(epochs), "experiment_name": "train"}
    test_options = {"experiment_name": "test"}
    # The tool's torch must use as many threads as this process for bitwise-equal sums.
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))

    trained = run_in_python(config, train_options, tmp_path / "train-python", "train")
    tool = run_tool("train.py", config, "--work-dir", tmp_path / "train-tool",
                    *run_tool_options(train_options), env=env)
    assert tool.returncode == 0, tool.stderr[-3000:]
    trained_by_tool = read_report(tmp_path / "train-tool" / REPORT_NAME)
    assert trained["mode"] == "train" and trained["epochs"] == epochs
    assert_same_run(trained, trained_by_tool)
    checkpoint = tmp_path / "train-python" / f"epoch_{epochs}.pth"
    python_weights = weights(checkpoint)
    tool_weights = weights(tmp_path / "train-tool" / f"epoch_{epochs}.pth")
    assert python_weights.keys() == tool_weights.keys()
    assert all(torch.equal(python_weights[key], tool_weights[key]) for key in python_weights)

    test_options["load_from"] = str(checkpoint)
    tested = run_in_python(config, test_options, tmp_path / "test-python", "test")
    tool = run_tool("test.py", config, checkpoint, "--work-dir", tmp_path / "test-tool",
                    *run_tool_options({"experiment_name": "test"}), env=env)
    assert tool.returncode == 0, tool.stderr[-3000:]
    tested_by_tool = read_report(tmp_path / "test-tool" / REPORT_NAME)
    assert tested["mode"] == "test"
    assert_same_run(tested, tested_by_tool)
    # The checkpoint holds the trained model: testing it repeats the last validation.
    assert tested["metrics"] == trained["metrics"]
