"""BenchReportHook without training: its throughput figure, and who writes report.json and how."""
import json
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config

from tasks.common import files, report
from tasks.common.report import REPORT_NAME, BenchReportHook, read_report


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingMetric:
    """A metric whose ``compute_metrics`` the evaluator calls with the collected results."""

    def compute_metrics(self, results):
        return {"top1": sum(results) / len(results)}


def fake_runner(work_dir, batch_size=4):
    cfg = Config(dict(task="classification", dataset_name="digits", primary_metric="cls/top1",
                      higher_is_better=True, dropkey=dict(variant="dropkey-dec")))
    loop = SimpleNamespace(evaluator=SimpleNamespace(metrics=[CountingMetric()]))
    return SimpleNamespace(
        cfg=cfg, model=torch.nn.Linear(2, 2), work_dir=str(work_dir), seed=0, epoch=1, iter=3,
        train_dataloader=SimpleNamespace(batch_size=batch_size),
        message_hub=SimpleNamespace(log_scalars={}), val_loop=loop, test_loop=loop)


def evaluated_hook(runner) -> BenchReportHook:
    hook = BenchReportHook(record_entropy=False)
    hook.before_val_epoch(runner)
    hook.after_val_epoch(runner, metrics={"cls/top1": 0.75})
    return hook


def test_throughput_counts_only_the_timed_iterations(tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(report.time, "perf_counter", clock)
    monkeypatch.setattr(report, "get_world_size", lambda: 2)
    runner = fake_runner(tmp_path, batch_size=4)
    hook = BenchReportHook(record_entropy=False)
    hook.before_train(runner)
    for iteration_seconds in (0.5, 0.25, 0.25):
        clock.now += 10.0  # data loading, between the iterations: not training throughput
        hook.before_train_iter(runner, 0)
        clock.now += iteration_seconds
        hook.after_train_iter(runner, 0)
    hook.after_train(runner)
    hook.before_val_epoch(runner)
    hook.after_val_epoch(runner, metrics={"cls/top1": 0.75})
    built = hook.build_report(runner)
    # 3 iterations x 4 samples x 2 processes in 0.5 + 0.25 + 0.25 s of iterations
    assert built["train_samples_per_second"] == pytest.approx(24.0)
    assert built["train_seconds"] == pytest.approx(31.0)
    assert built["mode"] == "train"


def test_a_test_run_reports_no_throughput(tmp_path):
    runner = fake_runner(tmp_path)
    built = evaluated_hook(runner).build_report(runner)
    assert built["mode"] == "test" and built["train_samples_per_second"] is None


def test_only_the_main_process_writes_the_report(tmp_path, monkeypatch):
    runner = fake_runner(tmp_path)
    hook = evaluated_hook(runner)
    monkeypatch.setattr(report, "is_main_process", lambda: False)
    hook.after_run(runner)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(report, "is_main_process", lambda: True)
    hook.after_run(runner)
    written = read_report(tmp_path / REPORT_NAME)
    assert written["variant"] == "dropkey-dec" and written["method"] == "dropkey"
    assert written["metrics"] == {"cls/top1": 0.75}


def test_a_failed_write_leaves_the_previous_report_whole(tmp_path, monkeypatch):
    runner = fake_runner(tmp_path)
    hook = evaluated_hook(runner)
    previous = {"previous": "report"}
    (tmp_path / REPORT_NAME).write_text(json.dumps(previous))

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        hook.after_run(runner)
    assert json.loads((tmp_path / REPORT_NAME).read_text()) == previous
    assert [path.name for path in tmp_path.iterdir()] == [REPORT_NAME]  # no temporary left


def test_a_run_without_evaluation_writes_no_report(tmp_path):
    runner = fake_runner(tmp_path)
    with pytest.raises(RuntimeError, match="no evaluation metrics"):
        BenchReportHook(record_entropy=False).after_run(runner)
    assert not (tmp_path / REPORT_NAME).exists()


def test_evaluated_samples_are_the_results_the_metrics_received(tmp_path):
    runner = fake_runner(tmp_path)
    hook = BenchReportHook(record_entropy=False)
    for results in ([1, 0, 1, 1], [1, 0, 1]):  # the last evaluation counts
        hook.before_val_epoch(runner)
        metric = runner.val_loop.evaluator.metrics[0]
        assert metric.compute_metrics(results) == {"top1": sum(results) / len(results)}
        hook.after_val_epoch(runner, metrics={"cls/top1": 0.75})
    assert hook.build_report(runner)["evaluated_samples"] == 3
