"""Suite runner: presets, validation, planning, dry run, a real tiny suite (resume, failures)."""
import argparse
import json
import runpy
import sys
from pathlib import Path

import pytest
from mmengine.config import Config, DictAction

from tasks.common.files import DataFormatError
from tasks.common.hooks import resolve_dropkey
from tasks.common.report import read_report
from tasks.common.suite import (epochs_options, format_option, load_suite, plan_runs,
                                resolve_config)
from tasks.common.variants import finetune_counterpart, get_variant, split_label

REPO = Path(__file__).resolve().parents[1]
TASKS = {"classification", "detection", "hoi", "mesh"}
FIVE = ["none", "attndrop", "dropkey-const", "dropkey-dec", "dropkey-inc"]


def write_suite(path: Path, tasks: dict, variants=("none",), seeds=(0,)) -> Path:
    path.write_text(f"variants = {list(variants)!r}\nseeds = {list(seeds)!r}\ntasks = {tasks!r}\n")
    return path


def run_suite_tool(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """``tools/run_suite.py args`` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["run_suite.py", *map(str, args)])
    code = 0
    try:
        runpy.run_path(str(REPO / "tools" / "run_suite.py"), run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_presets_cover_every_task_and_the_issue_variants():
    quick = load_suite("quick")
    assert set(quick) == TASKS
    assert all(t["variants"] == ["none", "dropkey-dec"] and t["seeds"] == [0]
               for t in quick.values())
    assert {task: t["cfg_options"]["train_cfg.max_epochs"] for task, t in quick.items()} == {
        "classification": 12, "detection": 3, "hoi": 10, "mesh": 8}
    standard = load_suite("standard")
    assert set(standard) == TASKS
    assert standard["classification"]["variants"] == FIVE + ["dropkey-block"]
    assert all(standard[t]["variants"] == FIVE for t in TASKS - {"classification"})
    assert all(t["seeds"] == [0, 1, 2] and not t["cfg_options"] for t in standard.values())
    spread = load_suite("spread")  # the seed's own spread: `none`, five seeds, full schedules
    assert set(spread) == TASKS
    assert all(t["variants"] == ["none"] and t["seeds"] == [0, 1, 2, 3, 4]
               and not t["cfg_options"] for t in spread.values())


@pytest.mark.parametrize("preset", ["quick", "standard"])
def test_presets_shorten_schedules_without_scheduler_entries(preset):
    for task in load_suite(preset).values():
        assert not any(key.startswith("param_scheduler") for key in task["cfg_options"])


def test_epochs_trains_that_long_and_evaluates_once_at_the_end(tmp_path):
    tasks = load_suite(str(write_suite(tmp_path / "s.py", {
        "a": {"epochs": 5},
        "b": {"epochs": 6, "cfg_options": {"train_cfg.val_interval": 2, "model.x": 1}},
        "c": {}})))
    assert tasks["a"]["cfg_options"] == {"train_cfg.max_epochs": 5, "train_cfg.val_interval": 5,
                                         "default_hooks.checkpoint.interval": 5}
    assert tasks["b"]["cfg_options"] == {**epochs_options(6), "train_cfg.val_interval": 2,
                                         "model.x": 1}
    assert tasks["c"]["cfg_options"] == {}


@pytest.mark.parametrize("body, field", [
    ("variants = ['none']\nseeds = [0]\n", "tasks"),
    ("methods = ['none']\nseeds = [0]\ntasks = dict(a=dict())\n", "variants"),
    ("variants = []\nseeds = [0]\ntasks = dict(a=dict())\n", "variants"),
    ("variants = ['none']\nseeds = [0, 0]\ntasks = dict(a=dict())\n", "seeds"),
    ("variants = ['none']\nseeds = [0]\ntasks = dict(a=dict(epoch=1))\n", "tasks.a"),
    ("variants = ['none']\nseeds = [0]\ntasks = dict(a=dict(epochs=0))\n", "tasks.a.epochs"),
    ("variants = ['none']\nseeds = [0]\ntasks = dict(a=dict(epochs=True))\n", "tasks.a.epochs"),
    ("variants = ['none']\nseeds = [0]\ntasks = dict(a=dict(epochs='3'))\n", "tasks.a.epochs"),
    ("variants = ['none']\nseeds = [0]\n"
     "tasks = dict(a=dict(epochs=3, cfg_options={'train_cfg.max_epochs': 4}))\n",
     "tasks.a.cfg_options"),
    ("variants = ['none']\nseeds = [0]\ntasks = dict(a=dict(cfg_options=dict(x=dict(y=1))))\n",
     "tasks.a.cfg_options"),
    ("variants = ['none']\nseeds = [0]\ntasks = dict(a=dict(config='c/{method}.py'))\n",
     "tasks.a.config"),
    ("variants = ['none']\nseeds = [0]\ntasks = dict(a=dict(config=3))\n", "tasks.a.config"),
    ("variants = ['none']\nseeds = [0]\n"
     "tasks = dict(a=dict(cfg_options={'dropkey.variant': 'dropkey-dec'}))\n",
     "tasks.a.cfg_options.dropkey.variant"),
    ("variants = ['none', 'dropkey-dec-p0.3']\nseeds = [0]\n"
     "tasks = dict(a=dict(cfg_options={'dropkey.drop_ratio': 0.2}))\n",
     "tasks.a.cfg_options.dropkey.drop_ratio"),
])
def test_bad_suite_config_names_the_field(tmp_path, body, field):
    path = tmp_path / "bad.py"
    path.write_text(body)
    with pytest.raises(DataFormatError) as info:
        load_suite(str(path))
    assert info.value.field == field and info.value.path == str(path)


@pytest.mark.parametrize("tasks, variants, field", [
    ({"a": {}}, ["none", "../escape"], "variants[1]"),
    ({"a": {"variants": ["none", "x/y"]}}, ["none"], "tasks.a.variants[1]"),
    ({"a": {}}, ["/abs"], "variants[0]"),
    ({"..": {}}, ["none"], "tasks..."),
    ({"a/../b": {}}, ["none"], "tasks.a/../b"),
])
def test_labels_and_task_names_that_are_not_path_safe_are_refused(tmp_path, tasks, variants,
                                                                  field):
    path = write_suite(tmp_path / "unsafe.py", tasks, variants=variants)
    with pytest.raises(DataFormatError) as info:
        load_suite(str(path))
    assert info.value.field == field and info.value.path == str(path)


@pytest.mark.parametrize("tasks, variants, field, problem", [
    ({"a": {}}, ["none", "dropkey-foo-p0.3"], "variants[1]", "unknown variant 'dropkey-foo-p0.3'"),
    ({"a": {"variants": ["dropkey-dec", "dropkey-bar-p0.1"]}}, ["none"], "tasks.a.variants[1]",
     "unknown variant 'dropkey-bar-p0.1'"),
    ({"a": {}}, ["none-p0.2"], "variants[0]", "'none' has no ratio to set"),
])
def test_a_ratio_label_of_an_unknown_base_is_refused_when_the_suite_is_read(tmp_path, tasks,
                                                                           variants, field,
                                                                           problem):
    path = write_suite(tmp_path / "ratios.py", tasks, variants=variants)
    with pytest.raises(DataFormatError, match=problem) as info:
        load_suite(str(path))
    assert info.value.field == field and info.value.path == str(path)


def test_a_label_carrying_its_ratio_runs_its_base_config_with_the_label(tmp_path):
    tasks = load_suite(str(write_suite(tmp_path / "s.py", {
        "classification": {"epochs": 2}}, variants=("dropkey-dec", "dropkey-dec-p0.3"))))
    plain, carrying = plan_runs(tasks, tmp_path / "out")
    base_config = REPO / "configs/classification/vit-mini_dropkey-dec_embedded.py"
    assert plain.config == carrying.config == base_config
    assert "dropkey.variant" not in plain.cfg_options
    assert carrying.cfg_options == {**epochs_options(2), "dropkey.variant": "dropkey-dec-p0.3"}
    assert carrying.work_dir.name == "seed0" and carrying.work_dir.parent.name == "dropkey-dec-p0.3"
    assert carrying.command()[-1] == "dropkey.variant=dropkey-dec-p0.3"
    # what tools/train.py makes of the command: the label, and the ratio it carries
    cfg = Config.fromfile(carrying.config, import_custom_modules=False)
    cfg.merge_from_dict(carrying.cfg_options)
    label, options = resolve_dropkey(cfg)
    assert label == "dropkey-dec-p0.3"
    assert (options["method"], options["schedule"], options["drop_ratio"]) == (
        "dropkey", "linear_decrease", 0.3)
    assert tasks["classification"]["cfg_options"] == epochs_options(2)  # shared dict untouched


def test_unsafe_label_stops_the_tool_before_any_directory_exists(tmp_path, monkeypatch, capsys):
    suite = write_suite(tmp_path / "unsafe.py", {"classification": {}},
                        variants=("none", "../../escape"))
    code, out, err = run_suite_tool(monkeypatch, capsys, suite, "--work-dir", tmp_path / "out")
    assert code == 2
    assert f"{suite}: variants[1]:" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape").exists()


@pytest.mark.parametrize("value", [3, 0.5, 1e-5, True, None, "AdamW", [1, 2], (3, 4), [[1, 2], 3]])
def test_cfg_option_values_survive_mmengine_parsing(value):
    namespace = argparse.Namespace()
    DictAction(option_strings=["--cfg-options"], dest="options")(
        None, namespace, [f"key={format_option(value)}"])
    parsed = namespace.options["key"]
    assert parsed == value and type(parsed) is type(value)


def test_plan_layout_and_unknown_task(tmp_path):
    tasks = load_suite(str(write_suite(tmp_path / "s.py", {
        "classification": {"epochs": 2}, "ghost": {}},
        variants=("none", "dropkey-dec"), seeds=(0, 1))))
    runs = plan_runs(tasks, tmp_path / "out")
    assert [r.name for r in runs[:2]] == ["classification/none/seed0", "classification/none/seed1"]
    assert runs[0].work_dir == (tmp_path / "out" / "classification" / "none" / "seed0").resolve()
    assert runs[0].config == REPO / "configs/classification/vit-mini_none_embedded.py"
    assert runs[2].config == REPO / "configs/classification/vit-mini_dropkey-dec_embedded.py"
    assert runs[0].command()[-4:] == ["--cfg-options", "train_cfg.max_epochs=2",
                                      "train_cfg.val_interval=2",
                                      "default_hooks.checkpoint.interval=2"]
    ghost = [r for r in runs if r.task == "ghost"]
    assert len(ghost) == 4 and all(r.config is None for r in ghost)
    assert "no config matches configs/ghost/*_none_embedded.py" in ghost[0].config_error
    with pytest.raises(ValueError, match="nope"):
        plan_runs(tasks, tmp_path / "out", only_tasks=["nope"])


def test_a_part_of_a_suite_runs_in_the_suite_s_own_directories(tmp_path):
    tasks = load_suite(str(write_suite(tmp_path / "s.py", {"classification": {}, "mesh": {}},
                                       variants=("none", "dropkey-dec", "drophead"),
                                       seeds=(0, 1))))
    whole = {run.name: run.work_dir for run in plan_runs(tasks, tmp_path / "out")}
    part = plan_runs(tasks, tmp_path / "out", only_tasks=["mesh"],
                     only_variants=["drophead", "none"])
    assert [run.name for run in part] == ["mesh/none/seed0", "mesh/none/seed1",
                                          "mesh/drophead/seed0", "mesh/drophead/seed1"]
    assert all(run.work_dir == whole[run.name] for run in part)
    with pytest.raises(ValueError, match="--variants: \\['attndrop'\\]"):
        plan_runs(tasks, tmp_path / "out", only_variants=["attndrop"])


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, monkeypatch, capsys):
    code, out, err = run_suite_tool(monkeypatch, capsys, "quick", "--work-dir",
                                    tmp_path / "suite", "--dry-run", "--jobs", "2")
    assert code == 0, err
    assert "8 runs, 2 at a time, OMP_NUM_THREADS=" in out
    assert "classification/dropkey-dec/seed0: run" in out
    assert "configs/classification/vit-mini_dropkey-dec_embedded.py" in out
    assert "train_cfg.max_epochs=12" in out and "param_scheduler" not in out
    assert not (tmp_path / "suite").exists()


def test_dry_run_shows_the_label_a_ratio_run_sets(tmp_path, monkeypatch, capsys):
    suite = write_suite(tmp_path / "sweep.py", {"classification": {}},
                        variants=("dropkey-inc-p0.05",))
    code, out, err = run_suite_tool(monkeypatch, capsys, suite, "--work-dir", tmp_path / "suite",
                                    "--dry-run")
    assert code == 0, err
    assert "classification/dropkey-inc-p0.05/seed0: run" in out
    command = out.split("classification/dropkey-inc-p0.05/seed0: run\n")[1].splitlines()[0]
    assert "configs/classification/vit-mini_dropkey-inc_embedded.py" in command
    assert command.endswith("--cfg-options dropkey.variant=dropkey-inc-p0.05")


ABLATION_SEEDS = {"classification": [0, 1, 2, 3, 4], "detection": [0, 1, 2], "hoi": [0, 1, 2],
                  "mesh": [0, 1, 2]}
ABLATION_VARIANTS = (
    ["none", "attndrop"]
    + [f"dropkey-{schedule}-p{ratio}" for schedule in ("const", "dec", "inc")
       for ratio in ("0.05", "0.1", "0.2", "0.3")]
    + ["dropkey-block", "dropkey-cross", "dropkey-column", "drophead", "dropkey-dec-ft-p0.1"])


def test_ablation_preset_plans_the_paper_study_on_every_task(tmp_path):
    tasks = load_suite("ablation")
    assert set(tasks) == TASKS
    runs = plan_runs(tasks, tmp_path / "ablation")
    assert len(runs) == 19 * (5 + 3 + 3 + 3) == 266
    for task, options in tasks.items():
        assert options["variants"] == ABLATION_VARIANTS
        assert options["seeds"] == ABLATION_SEEDS[task]
        assert "train_cfg.max_epochs" not in options["cfg_options"]  # full schedules
        expected = {"monte_carlo.samples": 8} if task in ("classification", "mesh") else {}
        assert options["cfg_options"] == expected, task
    assert [r.name for r in runs[:6]] == [f"classification/none/seed{s}" for s in range(5)] + [
        "classification/attndrop/seed0"]
    # the fine-tune tail is compared with the same variant trained without it
    assert finetune_counterpart("dropkey-dec-ft-p0.1") in ABLATION_VARIANTS
    for run in runs:
        assert run.config is not None or run.config_error, run.name
        base, ratio = split_label(run.variant)
        if ratio is None:
            assert "dropkey.variant" not in run.cfg_options
            continue
        assert run.cfg_options["dropkey.variant"] == run.variant
        assert get_variant(run.variant).drop_ratio == ratio
        assert run.config is not None and f"_{base}_embedded.py" in run.config.name, run.name


def test_ablation_preset_has_a_config_for_every_task_and_variant():
    """Every (task, base label) the ablation preset runs has its one embedded config."""
    tasks = load_suite("ablation")
    needed = sorted({(task, split_label(variant)[0]) for task, options in tasks.items()
                     for variant in options["variants"]})
    missing = [error for task, base in needed
               for config, error in [resolve_config(task, base, tasks[task]["config"])]
               if config is None]
    assert not missing, "\n".join(missing)


@pytest.mark.slow
def test_real_suite_isolates_failures_and_resumes(run_tool, shortest_epochs, tmp_path):
    """One real short classification run next to a task without configs and a crashing config."""
    (tmp_path / "broken_none.py").write_text("raise RuntimeError('deliberate config failure')\n")
    epochs = shortest_epochs(REPO / "configs/classification/vit-mini_none_embedded.py")
    suite = write_suite(tmp_path / "tiny.py", {
        "classification": {"epochs": epochs},
        "ghost": {},
        "broken": {"config": str(tmp_path / "broken_{variant}.py")},
    })
    work = tmp_path / "suite"
    first = run_tool("run_suite.py", suite, "--work-dir", work, "--jobs", "2")
    assert first.returncode == 1, first.stdout + first.stderr
    statuses = {task: json.loads((work / task / "none" / "seed0" / "run_status.json").read_text())
                for task in ("classification", "ghost", "broken")}
    assert statuses["classification"]["status"] == "ok", statuses["classification"]["error_tail"]
    assert all(status["variant"] == "none" for status in statuses.values())
    report = read_report(work / "classification" / "none" / "seed0" / "report.json")
    assert report["variant"] == "none" and report["seed"] == 0 and report["epochs"] == epochs
    assert statuses["classification"]["command"][-3:] == [
        f"{key}={value}" for key, value in epochs_options(epochs).items()]
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
    second = run_tool("run_suite.py", suite, "--work-dir", work, "--tasks", "classification",
                      "ghost")
    assert second.returncode == 1
    assert "[skip] classification/none/seed0" in second.stdout
    assert "runs: 0 ok, 1 failed, 1 skipped" in second.stdout
    assert (work / "classification" / "none" / "seed0" / "report.json").stat().st_mtime_ns \
        == report_time

    # A run stopped after its last checkpoint but before its report resumes instead of training
    # again: the rerun trains no epoch, and the report it writes holds the same metrics.
    run_dir = work / "classification" / "none" / "seed0"
    (run_dir / "report.json").unlink()
    log_before = (run_dir / "run.log").read_text()
    third = run_tool("run_suite.py", suite, "--work-dir", work, "--tasks", "classification")
    assert third.returncode == 0, third.stdout + third.stderr
    attempt = (run_dir / "run.log").read_text()
    assert attempt.startswith(log_before)
    assert "Epoch(train)" in log_before and "Epoch(train)" not in attempt[len(log_before):]
    assert "--resume" in json.loads((run_dir / "run_status.json").read_text())["command"]
    resumed = read_report(run_dir / "report.json")
    assert resumed["metrics"] == pytest.approx(report["metrics"])

    # Its checkpoint is not resumed under a recipe that resolves differently: the run fails at
    # once, naming the config and the directory to remove, and trains nothing.
    (run_dir / "report.json").unlink()
    changed = write_suite(tmp_path / "changed.py", {"classification": {
        "epochs": epochs, "cfg_options": {"optim_wrapper.optimizer.lr": 1e-5}}})
    log_before = (run_dir / "run.log").read_text()
    fourth = run_tool("run_suite.py", changed, "--work-dir", work)
    assert fourth.returncode == 1
    status = json.loads((run_dir / "run_status.json").read_text())
    assert status["status"] == "failed"
    assert "resolves differently from the config its checkpoint was trained with" in status["reason"]
    assert f"remove {run_dir}" in status["reason"]
    assert (run_dir / "run.log").read_text() == log_before
    assert not (run_dir / "report.json").exists()
