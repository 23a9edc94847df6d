"""Suite runner: presets, planning, dry run, and a real tiny suite (resume, failure isolation)."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import DictAction

from tasks.common.files import DataFormatError
from tasks.common.report import read_report
from tasks.common.suite import format_option, load_suite, plan_runs

REPO = Path(__file__).resolve().parents[1]
TASKS = {"classification", "detection", "hoi", "mesh"}
TINY_CLASSIFICATION = {"train_cfg.max_epochs": 1, "train_cfg.val_interval": 1,
                       "default_hooks.checkpoint.interval": 1}


def write_suite(path: Path, tasks: dict, methods=("none",), seeds=(0,)) -> Path:
    path.write_text(f"methods = {list(methods)!r}\nseeds = {list(seeds)!r}\ntasks = {tasks!r}\n")
    return path


def run_tool(*args):
    return subprocess.run([sys.executable, "tools/run_suite.py", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_presets_cover_every_task_and_the_issue_methods():
    quick = load_suite("quick")
    assert set(quick) == TASKS
    assert all(t["methods"] == ["none", "dropkey-dec"] and len(t["seeds"]) == 1
               for t in quick.values())
    assert quick["classification"]["cfg_options"]["train_cfg.max_epochs"] < 60
    standard = load_suite("standard")
    assert set(standard) == TASKS
    five = ["none", "attndrop", "dropkey-const", "dropkey-dec", "dropkey-inc"]
    assert standard["classification"]["methods"] == five + ["dropkey-block"]
    assert all(standard[t]["methods"] == five for t in TASKS - {"classification"})
    assert all(len(t["seeds"]) >= 3 and not t["cfg_options"] for t in standard.values())


@pytest.mark.parametrize("body, field", [
    ("methods = ['none']\nseeds = [0]\n", "tasks"),
    ("methods = []\nseeds = [0]\ntasks = dict(a=dict())\n", "methods"),
    ("methods = ['none']\nseeds = [0, 0]\ntasks = dict(a=dict())\n", "seeds"),
    ("methods = ['none']\nseeds = [0]\ntasks = dict(a=dict(epochs=1))\n", "tasks.a"),
    ("methods = ['none']\nseeds = [0]\ntasks = dict(a=dict(cfg_options=dict(x=dict(y=1))))\n",
     "tasks.a.cfg_options"),
])
def test_bad_suite_config_names_the_field(tmp_path, body, field):
    path = tmp_path / "bad.py"
    path.write_text(body)
    with pytest.raises(DataFormatError) as info:
        load_suite(str(path))
    assert info.value.field == field and info.value.path == str(path)


@pytest.mark.parametrize("value", [3, 0.5, 1e-5, True, None, "AdamW", [1, 2], (3, 4), [[1, 2], 3]])
def test_cfg_option_values_survive_mmengine_parsing(value):
    namespace = argparse.Namespace()
    DictAction(option_strings=["--cfg-options"], dest="options")(
        None, namespace, [f"key={format_option(value)}"])
    parsed = namespace.options["key"]
    assert parsed == value and type(parsed) is type(value)


def test_plan_layout_and_unknown_task(tmp_path):
    tasks = load_suite(str(write_suite(tmp_path / "s.py", {
        "classification": {"cfg_options": {"train_cfg.max_epochs": 1}}, "ghost": {}},
        methods=("none", "dropkey-dec"), seeds=(0, 1))))
    runs = plan_runs(tasks, tmp_path / "out")
    assert [r.name for r in runs[:2]] == ["classification/none/seed0", "classification/none/seed1"]
    assert runs[0].work_dir == (tmp_path / "out" / "classification" / "none" / "seed0").resolve()
    assert runs[0].config == REPO / "configs/classification/vit-mini_none_embedded.py"
    assert runs[0].command()[-2:] == ["--cfg-options", "train_cfg.max_epochs=1"]
    ghost = [r for r in runs if r.task == "ghost"]
    assert len(ghost) == 4 and all(r.config is None for r in ghost)
    assert "no config matches configs/ghost/*_none_embedded.py" in ghost[0].config_error
    with pytest.raises(ValueError, match="nope"):
        plan_runs(tasks, tmp_path / "out", only_tasks=["nope"])


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    result = run_tool("quick", "--work-dir", tmp_path / "suite", "--dry-run", "--jobs", "2")
    assert result.returncode == 0, result.stderr
    assert "8 runs, 2 at a time, OMP_NUM_THREADS=" in result.stdout
    assert "classification/dropkey-dec/seed0: run" in result.stdout
    assert "configs/classification/vit-mini_dropkey-dec_embedded.py" in result.stdout
    assert "train_cfg.max_epochs=" in result.stdout
    assert not (tmp_path / "suite").exists()


def test_real_suite_isolates_failures_and_resumes(tmp_path):
    """One real tiny classification run next to a task without configs and a crashing config."""
    (tmp_path / "broken_none.py").write_text("raise RuntimeError('deliberate config failure')\n")
    suite = write_suite(tmp_path / "tiny.py", {
        "classification": {"cfg_options": TINY_CLASSIFICATION},
        "ghost": {},
        "broken": {"config": str(tmp_path / "broken_{method}.py")},
    })
    work = tmp_path / "suite"
    first = run_tool(suite, "--work-dir", work, "--jobs", "2")
    assert first.returncode == 1, first.stdout + first.stderr
    statuses = {task: json.loads((work / task / "none" / "seed0" / "run_status.json").read_text())
                for task in ("classification", "ghost", "broken")}
    assert statuses["classification"]["status"] == "ok", statuses["classification"]["error_tail"]
    report = read_report(work / "classification" / "none" / "seed0" / "report.json")
    assert report["method"] == "none" and report["seed"] == 0 and report["epochs"] == 1
    assert statuses["classification"]["command"][-3:] == [
        "train_cfg.max_epochs=1", "train_cfg.val_interval=1", "default_hooks.checkpoint.interval=1"]
    assert statuses["ghost"]["status"] == "failed"
    assert "no config matches configs/ghost/" in statuses["ghost"]["reason"]
    assert statuses["broken"]["reason"] == "tools/train.py exited with code 1"
    assert "deliberate config failure" in statuses["broken"]["error_tail"]
    assert "runs: 1 ok, 2 failed, 0 skipped" in first.stdout
    assert f"report: {work / 'summary' / 'summary.html'}" in first.stdout
    summary = json.loads((work / "summary" / "summary.json").read_text())
    assert [b["name"] for b in summary["benchmarks"]] == ["classification/digits"]
    assert {p["task"] for p in summary["problems"]} == {"ghost", "broken"}

    report_time = (work / "classification" / "none" / "seed0" / "report.json").stat().st_mtime_ns
    second = run_tool(suite, "--work-dir", work, "--tasks", "classification", "ghost")
    assert second.returncode == 1
    assert "[skip] classification/none/seed0" in second.stdout
    assert "runs: 0 ok, 1 failed, 1 skipped" in second.stdout
    assert (work / "classification" / "none" / "seed0" / "report.json").stat().st_mtime_ns \
        == report_time
