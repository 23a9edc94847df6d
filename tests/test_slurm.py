"""The suite on Slurm: resources, bad input, and real jobs on the local cluster.

Tests marked ``slurm`` need a running cluster (``bash tools/local_slurm.sh start``): without
one they skip with the reason, except under ``CI=true``, where a missing cluster fails them.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.common.files import DataFormatError
from tasks.common.report import read_report
from tasks.common.suite import eta_seconds, load_suite, plan_runs
from test_suite import run_suite_tool, write_suite

REPO = Path(__file__).resolve().parents[1]
TINY = {"classification": {"epochs": 4}, "mesh": {"epochs": 3}}  # the cheapest schedules
# Runs that outlast the start-up of a second suite process (a follower, --cancel) even on a
# loaded machine: 60 epochs of classification take a minute or more at one thread.
LONG_EPOCHS = 60
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def cluster_problem() -> str:
    """Why the local cluster cannot take jobs, or "" when it can."""
    if shutil.which("sbatch") is None:
        return "sbatch is not on PATH (bash tools/local_slurm.sh start)"
    result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if not {"idle", "mixed", "allocated"} & set(result.stdout.split()):
        return f"no Slurm node is up: sinfo says {(result.stdout + result.stderr).strip()!r}"
    return ""


@pytest.fixture(scope="module")
def cluster():
    problem = cluster_problem()
    if problem and os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the Slurm cluster is not running: {problem}")
    if problem:
        pytest.skip(f"no Slurm cluster: {problem}")


def suite_tool(*args, timeout=600):
    return subprocess.run([sys.executable, str(REPO / "tools" / "run_suite.py"), *map(str, args)],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def status_of(work: Path, name: str) -> dict:
    return json.loads((work / name / "run_status.json").read_text())


def progress_table(out: str) -> dict:
    """``--status`` output as {task: {column: count}}."""
    lines = out.splitlines()
    columns = ["done", "running", "queued", "failed", "not started"]
    assert lines[0].split(None, 1)[1].split("  ") == columns
    return {line.split()[0]: dict(zip(columns, map(int, line.split()[1:])))
            for line in lines[1:] if not line.startswith("ETA")}


def checkpointed_epoch(work_dir: Path) -> int:
    try:
        name = Path((work_dir / "last_checkpoint").read_text().strip()).stem
    except OSError:
        return 0
    return int(name.split("_")[1])


def wait_for(condition, what: str, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


# --- without a cluster ------------------------------------------------------------------------

def test_resources_lay_task_over_suite_over_defaults(tmp_path):
    suite = tmp_path / "res.py"
    suite.write_text("variants = ['none']\nseeds = [0]\n"
                     "resources = dict(gpus_per_node=8, time_min=600, sbatch=dict(qos='high'))\n"
                     "tasks = dict(classification=dict(resources=dict(nodes=2, time_min=90)))\n")
    resources = load_suite(str(suite))["classification"]["resources"]
    assert resources == dict(gpus_per_node=8, nodes=2, cpus_per_task=1, mem_gb=None,
                             time_min=90, partition=None, sbatch={"qos": "high"})


@pytest.mark.parametrize("where,body,field", [
    ("task", "tasks = dict(mesh=dict(resources=dict(gpu=8)))", "tasks.mesh.resources.gpu"),
    ("suite", "resources = dict(walltime=60)\ntasks = dict(mesh=dict())", "resources.walltime"),
    ("type", "tasks = dict(mesh=dict(resources=dict(nodes='2')))", "tasks.mesh.resources.nodes"),
    ("minimum", "tasks = dict(mesh=dict(resources=dict(time_min=0)))",
     "tasks.mesh.resources.time_min"),
])
def test_bad_resources_name_the_file_and_key(tmp_path, where, body, field):
    suite = tmp_path / "bad.py"
    suite.write_text("variants = ['none']\nseeds = [0]\n" + body + "\n")
    with pytest.raises(DataFormatError) as err:
        load_suite(str(suite))
    assert err.value.path == str(suite) and err.value.field == field


def test_unknown_resource_key_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    suite = write_suite(tmp_path / "bad.py", {"mesh": {"resources": {"gpu": 8}}})
    code, out, err = run_suite_tool(monkeypatch, capsys, suite, "--work-dir", tmp_path / "w",
                                    "--executor", "slurm")
    assert code == 2 and err.strip().count("\n") == 0
    assert str(suite) in err and "tasks.mesh.resources.gpu" in err
    assert not (tmp_path / "w").exists()


def test_eta_uses_each_tasks_mean_and_the_overall_mean_for_tasks_without_runs():
    # classification: 2 left x mean(10, 20) = 30; mesh: 3 left x overall mean(10, 20, 60) = 90;
    # detection 1 left x 60 = 60; (30 + 90 + 60) / 2 at a time = 90
    durations = {"classification": [10.0, 20.0], "detection": [60.0]}
    assert eta_seconds(durations, {"classification": 2, "mesh": 3, "detection": 1}, 2) == 90.0
    assert eta_seconds({}, {"mesh": 3}, 2) is None


def test_paper_dry_run_prints_sbatch_parameters_of_8_gpu_runs(tmp_path, monkeypatch, capsys):
    code, out, err = run_suite_tool(monkeypatch, capsys, "paper", "--work-dir", tmp_path / "p",
                                    "--executor", "slurm", "--dry-run", "--partition", "gpu",
                                    "--time-min", "2880")
    assert code == 0, err
    assert not (tmp_path / "p").exists()
    runs = plan_runs(load_suite("paper"), tmp_path / "p")
    assert {run.task for run in runs} == {"classification", "detection", "hoi", "mesh"}
    assert all(run.config is not None and "embedded" not in run.config.name for run in runs)
    assert out.count("(8 GPU(s) per run") == len(runs)
    assert out.count("--partition=gpu") == len(runs) and "--time=2880" in out
    assert "--ntasks-per-node=8 --cpus-per-task=10" in out and "--gpus-per-node=8" in out
    assert "deit-s_dropkey-dec_imagenet.py" in out and "--resume --launcher slurm" in out


def test_slurm_executor_without_sbatch_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, squeue, sinfo
    suite = write_suite(tmp_path / "tiny.py", TINY)
    code, out, err = run_suite_tool(monkeypatch, capsys, suite, "--work-dir", tmp_path / "w",
                                    "--executor", "slurm")
    assert code == 2 and err.strip().count("\n") == 0 and "sbatch is not on PATH" in err
    assert not list((tmp_path / "w").rglob("run_status.json"))


def test_status_of_a_directory_without_a_suite_exits_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    code, out, err = run_suite_tool(monkeypatch, capsys, "quick", "--work-dir",
                                    tmp_path / "empty", "--status")
    assert code == 2 and "holds no run of suite 'quick'" in err and err.count("\n") == 1


# --- on the local cluster ---------------------------------------------------------------------

@pytest.mark.slurm
@pytest.mark.slow
def test_resources_slurm_refuses_exit_2_with_nothing_submitted(cluster, tmp_path):
    suite = write_suite(tmp_path / "tiny.py", TINY)
    partition = suite_tool(suite, "--work-dir", tmp_path / "w", "--executor", "slurm",
                           "--partition", "nosuchpartition")
    assert partition.returncode == 2, partition.stderr
    assert "invalid partition specified: nosuchpartition" in partition.stderr
    gpus = suite_tool(suite, "--work-dir", tmp_path / "w", "--executor", "slurm",
                      "--gpus-per-node", "8")
    assert gpus.returncode == 2 and "has no GPUs" in gpus.stderr
    assert gpus.stderr.strip().count("\n") == 0
    assert not list((tmp_path / "w").rglob("run_status.json"))
    assert "[submit]" not in partition.stdout + gpus.stdout


@pytest.mark.slurm
@pytest.mark.slow
def test_tiny_suite_on_slurm_equals_local_and_status_reports_it(cluster, tmp_path):
    suite = write_suite(tmp_path / "tiny.py", TINY, variants=("none", "dropkey-dec"))
    local = suite_tool(suite, "--work-dir", tmp_path / "local", "--jobs", "2", "--threads", "1")
    assert local.returncode == 0, local.stdout + local.stderr
    on_slurm = suite_tool(suite, "--work-dir", tmp_path / "slurm", "--executor", "slurm",
                          "--cpus-per-task", "1")
    assert on_slurm.returncode == 0, on_slurm.stdout + on_slurm.stderr
    assert "runs: 4 ok, 0 failed, 0 skipped" in on_slurm.stdout
    assert "[submit] 4 run(s) as job array" in on_slurm.stdout
    for name in ("classification/none/seed0", "classification/dropkey-dec/seed0",
                 "mesh/none/seed0", "mesh/dropkey-dec/seed0"):
        expected = read_report(tmp_path / "local" / name / "report.json")["metrics"]
        assert read_report(tmp_path / "slurm" / name / "report.json")["metrics"] == expected
        status = status_of(tmp_path / "slurm", name)
        assert status["executor"] == "slurm" and status["slurm_state"] == "COMPLETED"
        assert status["status"] == "ok" and status["seconds"] > 0
    summary = json.loads((tmp_path / "slurm" / "summary" / "summary.json").read_text())
    assert {b["name"].split("/")[0] for b in summary["benchmarks"]} == {"classification", "mesh"}
    assert summary["problems"] == []
    status = suite_tool(suite, "--work-dir", tmp_path / "slurm", "--status")
    assert status.returncode == 0, status.stderr
    assert progress_table(status.stdout) == {
        task: {"done": 2, "running": 0, "queued": 0, "failed": 0, "not started": 0}
        for task in ("classification", "mesh")}
    rerun = suite_tool(suite, "--work-dir", tmp_path / "slurm", "--executor", "slurm")
    assert "runs: 0 ok, 0 failed, 4 skipped" in rerun.stdout and "[submit]" not in rerun.stdout


def start_suite(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "tools" / "run_suite.py"),
                             *map(str, args)], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.slurm
@pytest.mark.slow
def test_cancelled_job_is_followed_then_resubmitted_and_resumes(cluster, tmp_path):
    run = "classification/none/seed0"
    suite = write_suite(tmp_path / "long.py", {"classification": {
        "epochs": LONG_EPOCHS, "cfg_options": {"default_hooks.checkpoint.interval": 1}}})
    work = tmp_path / "w"
    first = start_suite(suite, "--work-dir", work, "--executor", "slurm")
    wait_for(lambda: checkpointed_epoch(work / run) >= 2, "the second epoch's checkpoint")
    follower = start_suite(suite, "--work-dir", work, "--executor", "slurm")  # a rerun follows
    job_id = status_of(work, run)["job_id"]
    follower_lines = []
    while not follower_lines or not follower_lines[-1].startswith("[follow]"):
        follower_lines.append(follower.stdout.readline())
        assert follower_lines[-1], "".join(follower_lines)
    subprocess.run(["scancel", job_id], check=True)
    first_out, _ = first.communicate(timeout=120)
    follower_out = "".join(follower_lines) + follower.communicate(timeout=120)[0]
    assert first.returncode == 1 and follower.returncode == 1, first_out + follower_out
    assert f"[follow] {run}: Slurm job {job_id}" in follower_out
    assert "[submit]" not in follower_out
    status = status_of(work, run)
    assert status["status"] == "failed" and status["slurm_state"] == "CANCELLED"
    assert f"Slurm job {job_id} ended CANCELLED" in status["reason"]
    progress = suite_tool(suite, "--work-dir", work, "--status")
    assert progress_table(progress.stdout)["classification"]["failed"] == 1

    rerun = suite_tool(suite, "--work-dir", work, "--executor", "slurm")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    status = status_of(work, run)
    assert status["status"] == "ok" and status["job_id"] != job_id
    log = (work / run / "run.log").read_text()
    resumed = re.findall(r"resumed epoch: (\d+)", log)
    assert len(resumed) == 1 and int(resumed[0]) >= 2, log
    assert read_report(work / run / "report.json")["epochs"] == LONG_EPOCHS


@pytest.mark.slurm
@pytest.mark.slow
def test_job_over_its_time_limit_requeues_and_finishes(cluster, tmp_path):
    """Three minutes of Slurm time for a run of more; the requeue signal 60 s before the limit.

    Slurm may send the signal up to a minute early, so the limit leaves a minute after each
    start: a signal during the job's start-up, before submitit handles it, would kill the job.
    """
    run = "classification/none/seed0"
    suite = write_suite(tmp_path / "long.py", {"classification": {
        "epochs": 150, "cfg_options": {"default_hooks.checkpoint.interval": 1},
        "resources": {"time_min": 3, "sbatch": {"signal": "USR2@60"}}}})
    work = tmp_path / "w"
    result = suite_tool(suite, "--work-dir", work, "--executor", "slurm", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    status = status_of(work, run)
    assert status["status"] == "ok" and status["seconds"] > 60
    log = (work / run / "run.log").read_text()
    assert f"=== Slurm job {status['job_id']} (restart 1)" in log
    assert "resumed epoch: " in log
    assert read_report(work / run / "report.json")["epochs"] == 150


@pytest.mark.slurm
@pytest.mark.slow
def test_cancel_stops_the_suites_live_jobs(cluster, tmp_path):
    suite = write_suite(tmp_path / "long.py", {task: {"epochs": LONG_EPOCHS} for task in TINY},
                        variants=("none", "dropkey-dec"))
    work = tmp_path / "w"
    follower = start_suite(suite, "--work-dir", work, "--executor", "slurm")
    wait_for(lambda: len(list(work.rglob("run_status.json"))) == 4, "the submission", 60)
    cancel = suite_tool(suite, "--work-dir", work, "--cancel")
    assert cancel.returncode == 0 and "cancelled 4 job(s)" in cancel.stdout, cancel.stderr
    out, _ = follower.communicate(timeout=120)
    assert follower.returncode == 1 and "runs: 0 ok, 4 failed, 0 skipped" in out, out
    states = {status_of(work, f"{task}/{variant}/seed0")["slurm_state"]
              for task in TINY for variant in ("none", "dropkey-dec")}
    assert states == {"CANCELLED"}
