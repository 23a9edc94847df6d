"""Multi-process training on CPU (gloo): torchrun and Slurm's srun, two processes each.

Every task's embedded config trains on its shortest schedule (detection and HOI on a few images,
with an odd number of validation images so that the distributed sampler pads); one report is
written, and its metrics, computed on exactly the data set's samples, are those of the final
checkpoint evaluated in one process (mesh: and in three, which pad its 250 samples). The two
ranks draw different DropKey masks, and a run killed after a checkpoint resumes to the
uninterrupted run's numbers. The Slurm test needs the
local cluster (tools/local_slurm.sh start): it skips when there is none, and fails with CI=true.
"""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import DATASETS, HOOKS, DefaultScope
from mmengine.utils import import_modules_from_strings

from tasks.common.hooks import unwrap

REPO = Path(__file__).resolve().parents[1]
CLASSIFICATION = "configs/classification/vit-mini_dropkey-dec_embedded.py"
FEW_IMAGES = ("train_dataloader.dataset.indices=32", "val_dataloader.dataset.indices=25",
              "test_dataloader.dataset.indices=25")
TASKS = {  # config and the options that keep its run short
    "classification": (CLASSIFICATION, ()),
    "detection": ("configs/detection/dino-tiny_dropkey-dec_embedded.py", FEW_IMAGES),
    "hoi": ("configs/hoi/qpic-mini_dropkey-dec_embedded.py", FEW_IMAGES),
    "mesh": ("configs/mesh/metro-mini_dropkey-dec_embedded.py", ()),
}
# Validation and a checkpoint after every epoch, so that a run can be killed after one.
EVERY_EPOCH = ("train_cfg.val_interval=1", "default_hooks.checkpoint.interval=1")
TIMEOUT = 900

pytestmark = pytest.mark.slow


@HOOKS.register_module()
class MaskProbeHook(Hook):
    """Before the first training iteration, each rank passes one fixed input through the first
    DropKey layer in training mode and writes hashes of the output and of the layer's weights
    to WORK_DIR/probe-rank<R>.json: with equal weights, the outputs differ only by the mask."""

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter > 0:
            return
        layer = unwrap(runner.model).backbone.blocks[0].attn
        tokens = torch.randn(2, 16, layer.qkv.in_features,
                             generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            output = layer.train()(tokens)
        weights = torch.cat([p.detach().flatten() for p in layer.parameters()])
        probe = {name: hashlib.sha256(t.numpy().tobytes()).hexdigest()
                 for name, t in (("output", output), ("weights", weights))}
        Path(runner.work_dir, f"probe-rank{runner.rank}.json").write_text(json.dumps(probe))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment() -> dict:
    """One thread per process; tests/ importable, for MaskProbeHook."""
    paths = [str(REPO / "tests"), *filter(None, [os.environ.get("PYTHONPATH")])]
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(paths))


def torchrun(processes: int, tool: str, *args) -> subprocess.Popen:
    """``torchrun --nproc_per_node PROCESSES tools/TOOL ARGS --launcher pytorch`` in the
    background, its output appended to WORK_DIR.log (WORK_DIR: the value of --work-dir)."""
    work_dir = Path(args[args.index("--work-dir") + 1])
    work_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{work_dir}.log", "a") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
             "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
             str(REPO / "tools" / tool), *map(str, args), "--launcher", "pytorch"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=environment())


def descendants(pid: int) -> list:
    """The processes that ``pid`` started, and those they started (torchrun starts its workers
    in sessions of their own, so its process group does not hold them)."""
    children = [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split()]
    return [process for child in children for process in (child, *descendants(child))]


def finish(process: subprocess.Popen, work_dir: Path) -> dict:
    assert process.wait(timeout=TIMEOUT) == 0, Path(f"{work_dir}.log").read_text()[-3000:]
    return json.loads((work_dir / "report.json").read_text())


def validation_size(work_dir: Path, config: str) -> int:
    """The number of samples of the validation set of the run in ``work_dir``, built from the
    config the run saved there."""
    cfg = Config.fromfile(work_dir / Path(config).name)
    import_modules_from_strings(**cfg.custom_imports)
    cwd = os.getcwd()
    os.chdir(REPO)  # data roots are relative to the repository
    try:
        with DefaultScope.overwrite_default_scope(cfg.get("default_scope")):
            return len(DATASETS.build(cfg.val_dataloader.dataset))
    finally:
        os.chdir(cwd)


def outcome(report: dict) -> dict:
    """What an exact resume reproduces: the metrics and every curve but the timings."""
    return {"metrics": report["metrics"], "curves": {
        name: curve for name, curve in report["curves"].items() if not name.endswith("time")}}


def probe_config(directory: Path) -> Path:
    """The classification config with MaskProbeHook added to its hooks."""
    base = Config.fromfile(REPO / CLASSIFICATION)
    config = directory / "vit-mini_dropkey-dec_probed.py"
    config.write_text(
        f"_base_ = [{str(REPO / CLASSIFICATION)!r}]\n"
        f"custom_imports = dict(imports={base.custom_imports.imports + ['test_distributed']!r}, "
        "allow_failed_imports=False)\n"
        f"custom_hooks = {base.custom_hooks + [dict(type='MaskProbeHook')]!r}\n")
    return config


class Run(NamedTuple):
    config: Path
    options: tuple  # --cfg-options and its values
    work_dir: Path
    report: dict


RUNS: dict = {}  # two_process_run's runs by task: each is trained once per session


@pytest.fixture
def two_process_run(tmp_path_factory, shortest_epochs):
    """``two_process_run(task)``: the task's two-process torchrun training on its shortest
    schedule. Classification runs with the mask probe, evaluated and saved every epoch (the
    resume and Slurm tests repeat it)."""
    runs = RUNS

    def run(task: str) -> Run:
        if task not in runs:
            config, options = REPO / TASKS[task][0], TASKS[task][1]
            directory = tmp_path_factory.mktemp(task)
            if task == "classification":
                config, options = probe_config(directory), (*options, *EVERY_EPOCH)
            options = ("--cfg-options", f"train_cfg.max_epochs={shortest_epochs(config)}",
                       *options)
            work_dir = directory / "work"
            report = finish(torchrun(2, "train.py", config, "--work-dir", work_dir, *options),
                            work_dir)
            assert [path.name for path in directory.rglob("report.json*")] == ["report.json"]
            runs[task] = Run(config, options, work_dir, report)
        return runs[task]
    return run


def evaluate(processes: int, run: Run, work_dir: Path) -> dict:
    """The report of ``tools/test.py`` on the run's last checkpoint in ``processes`` processes."""
    args = (run.config, (run.work_dir / "last_checkpoint").read_text().strip(),
            "--work-dir", work_dir, *run.options)
    if processes > 1:
        return finish(torchrun(processes, "test.py", *args), work_dir)
    tested = subprocess.run([sys.executable, str(REPO / "tools" / "test.py"), *map(str, args)],
                            cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT,
                            env=environment())
    assert tested.returncode == 0, tested.stderr[-3000:]
    return json.loads((work_dir / "report.json").read_text())


@pytest.mark.parametrize("task", sorted(TASKS))
def test_two_processes_train_and_evaluate_each_sample_exactly_once(task, two_process_run,
                                                                  tmp_path):
    """One report; its metrics are computed on exactly the validation set's samples (detection
    and HOI: 25, padded to 26 by the sampler) and equal those of one process."""
    run = two_process_run(task)
    size = validation_size(run.work_dir, run.config)
    assert run.report["evaluated_samples"] == size
    alone = evaluate(1, run, tmp_path / "tested")
    assert alone["evaluated_samples"] == size
    assert alone["metrics"] == pytest.approx(run.report["metrics"], rel=1e-5, abs=1e-6)


def test_three_processes_pad_the_mesh_test_set_and_evaluate_each_sample_once(two_process_run,
                                                                             tmp_path):
    """250 samples in 3 processes: 84 each, 2 of them padding, which must not be counted (the
    mean-pose baseline's errors do not depend on the model, so a duplicate would move them)."""
    run = two_process_run("mesh")
    tested = evaluate(3, run, tmp_path / "tested")
    assert tested["evaluated_samples"] == validation_size(run.work_dir, run.config)
    assert tested["metrics"] == pytest.approx(run.report["metrics"], rel=1e-5, abs=1e-6)


def test_ranks_draw_different_masks_from_equal_weights(two_process_run):
    work_dir = two_process_run("classification").work_dir
    probes = [json.loads((work_dir / f"probe-rank{rank}.json").read_text()) for rank in (0, 1)]
    assert probes[0]["weights"] == probes[1]["weights"]
    assert probes[0]["output"] != probes[1]["output"]


def test_killed_two_process_run_resumes_to_the_uninterrupted_numbers(two_process_run, tmp_path):
    uninterrupted = two_process_run("classification")
    work_dir = tmp_path / "work"
    first = torchrun(2, "train.py", uninterrupted.config, "--work-dir", work_dir,
                     *uninterrupted.options)
    record = work_dir / "last_checkpoint"
    while not (record.is_file() and record.read_text().endswith("/epoch_2.pth")):
        assert first.poll() is None, "the run ended before epoch 2's checkpoint"
        time.sleep(0.05)
    for pid in (first.pid, *descendants(first.pid)):  # torchrun, then both of its processes
        os.kill(pid, signal.SIGKILL)
    first.wait()
    assert not (work_dir / "report.json").exists()

    resumed = finish(torchrun(2, "train.py", uninterrupted.config, "--work-dir", work_dir,
                              "--resume", *uninterrupted.options), work_dir)
    assert "resumed epoch: 2," in Path(f"{work_dir}.log").read_text()
    assert outcome(resumed) == outcome(uninterrupted.report)


def slurm_unavailable() -> str:
    """Why the local Slurm cluster cannot run jobs, or '' when it can."""
    if shutil.which("sinfo") is None or shutil.which("srun") is None:
        return "Slurm is not installed (no sinfo or srun on PATH)"
    states = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True,
                            text=True, timeout=30)
    if states.returncode != 0:
        return f"the Slurm cluster does not answer: {states.stderr.strip()}"
    if not {"idle", "mixed", "allocated"} & set(states.stdout.split()):
        return f"no Slurm node is up (node states: {states.stdout.split() or 'none'})"
    return ""


@pytest.fixture
def slurm_cluster():
    reason = slurm_unavailable()
    if reason and os.environ.get("CI") == "true":
        pytest.fail(f"CI needs a running Slurm cluster: {reason}")
    if reason:
        pytest.skip(reason)


@pytest.mark.slurm
def test_srun_two_tasks_train_as_torchrun_does(slurm_cluster, two_process_run, tmp_path):
    by_torchrun = two_process_run("classification")
    work_dir = tmp_path / "work"
    run = subprocess.run(
        ["srun", "--ntasks", "2", "--chdir", str(REPO), sys.executable, "tools/train.py",
         str(by_torchrun.config), "--launcher", "slurm", "--work-dir", str(work_dir),
         *by_torchrun.options],
        capture_output=True, text=True, timeout=TIMEOUT, env=environment())
    assert run.returncode == 0, run.stderr[-3000:]
    assert [path.name for path in tmp_path.rglob("report.json*")] == ["report.json"]
    report = json.loads((work_dir / "report.json").read_text())
    assert outcome(report) == outcome(by_torchrun.report)
