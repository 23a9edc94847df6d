from pathlib import Path

import pytest

from dropkey_core import layer_drop_ratios

REPO = Path(__file__).resolve().parents[1]


def test_linear_decrease_runs_from_base_to_zero():
    assert layer_drop_ratios(0.2, 5) == pytest.approx([0.2, 0.15, 0.1, 0.05, 0.0])


def test_linear_increase_runs_from_zero_to_base():
    assert layer_drop_ratios(0.2, 5, "linear_increase") == pytest.approx([0, 0.05, 0.1, 0.15, 0.2])


def test_constant_and_explicit():
    assert layer_drop_ratios(0.1, 3, "constant") == [0.1] * 3
    assert layer_drop_ratios(0.0, 3, "explicit", ratios=[0.3, 0.2, 0.1]) == [0.3, 0.2, 0.1]


def test_start_and_end_override_the_endpoints():
    assert layer_drop_ratios(0.1, 3, "linear_decrease", start=0.3, end=0.1) == \
        pytest.approx([0.3, 0.2, 0.1])
    assert layer_drop_ratios(0.1, 1, "linear_decrease") == [0.1]


@pytest.mark.parametrize("kwargs, match", [
    (dict(base=0.1, num_layers=0), "num_layers"),
    (dict(base=0.1, num_layers=2, schedule="cosine"), "unknown schedule"),
    (dict(base=0.1, num_layers=2, schedule="explicit"), "ratios"),
    (dict(base=0.1, num_layers=2, ratios=[0.1]), "2 layers"),
    (dict(base=1.0, num_layers=2, schedule="constant"), r"\[0, 1\)"),
])
def test_invalid_schedules_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        layer_drop_ratios(**kwargs)


@pytest.mark.parametrize("config, epochs", [
    ("configs/classification/vit-mini_none_embedded.py", 4),   # cosine begins after 3 warm-up
    ("configs/detection/dino-tiny_none_embedded.py", 1),        # warm-up by iteration
    ("configs/hoi/qpic-mini_none_embedded.py", 3),
    ("configs/mesh/metro-mini_none_embedded.py", 3),
    ("configs/detection/detr-r50_none_coco.py", 1),             # a step schedule with an end
])
def test_shortest_epochs_of_the_embedded_configs(config, epochs):
    from mmengine.config import Config

    from tasks.common.schedules import shortest_epochs
    assert shortest_epochs(Config.fromfile(REPO / config)) == epochs
