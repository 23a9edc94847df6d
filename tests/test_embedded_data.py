"""prepare_embedded: the one way every task writes its embedded data set, marker last."""
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from tasks.common.embedded_data import COMPLETE_MARKER, is_complete, prepare_embedded


def write_set(out: Path, log: Path = None, pause: float = 0.0) -> None:
    """A two-file data set; each call is logged, so tests can count generations."""
    if log is not None:
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
    time.sleep(pause)
    assert not any(out.iterdir()), "the generator must get an empty directory"
    (out / "annotations").mkdir()
    (out / "annotations" / "train.json").write_text("[]")
    (out / "image.png").write_bytes(b"png")


def leftovers(root: Path) -> list:
    """Anything beside ``root`` except the lock file: staging directories left behind."""
    return sorted(p.name for p in root.parent.iterdir()
                  if p != root and p.name != f".{root.name}.lock")


def test_missing_set_is_generated_with_its_marker(tmp_path):
    root = tmp_path / "generated" / "task"
    assert prepare_embedded(root, write_set) == root
    assert is_complete(root) and (root / "annotations/train.json").read_text() == "[]"
    assert leftovers(root) == []


def test_half_written_set_is_replaced(tmp_path):
    root = tmp_path / "task"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "train.json").write_text('[{"trunca')
    (root / "stale.png").write_bytes(b"")
    log = tmp_path / "calls.log"
    prepare_embedded(root, lambda out: write_set(out, log))
    assert len(log.read_text().splitlines()) == 1
    assert is_complete(root) and not (root / "stale.png").exists()
    assert (root / "annotations/train.json").read_text() == "[]"


def test_complete_set_is_not_touched(tmp_path):
    root = tmp_path / "task"
    prepare_embedded(root, write_set)
    (root / "image.png").write_bytes(b"edited by hand")
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}

    def must_not_run(out):
        raise AssertionError("a complete set was generated again")

    prepare_embedded(root, must_not_run)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
    assert (root / "image.png").read_bytes() == b"edited by hand"


def test_failed_generation_leaves_nothing_that_looks_whole(tmp_path):
    root = tmp_path / "task"

    def fail_halfway(out):
        (out / "annotations").mkdir()
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        prepare_embedded(root, fail_halfway)
    assert not root.exists() and leftovers(root) == []


def _prepare_after_barrier(root, log, barrier, results):
    barrier.wait()
    results.put(str(prepare_embedded(root, lambda out: write_set(out, log, pause=0.3))))


def test_two_processes_at_once_produce_one_complete_set(tmp_path):
    root, log = tmp_path / "data" / "task", tmp_path / "calls.log"
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_prepare_after_barrier, args=(root, log, barrier, results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert [results.get(timeout=1) for _ in workers] == [str(root)] * 2
    assert len(log.read_text().splitlines()) == 1  # the second process waited and found it done
    assert is_complete(root) and leftovers(root) == []
    assert sorted(p.name for p in root.iterdir()) == sorted([COMPLETE_MARKER, "annotations",
                                                             "image.png"])
