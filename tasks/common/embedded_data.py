"""Embedded data sets, prepared the same way for every task.

A dataset built with ``generate_if_missing=True`` calls :func:`prepare_embedded` with its data
root and its task's generator. A data set counts as present only when its completion marker
exists: the generator writes into a staging directory beside the root, the marker is written
last, and the directory is renamed into place, so a killed generation never leaves a set that
looks whole. A lock serialises runs that start at once (a suite's parallel jobs share a root).
"""
from __future__ import annotations

import fcntl
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from mmengine.logging import print_log

COMPLETE_MARKER = ".complete"


def is_complete(root) -> bool:
    return (Path(root) / COMPLETE_MARKER).is_file()


@contextmanager
def _locked(root: Path):
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def prepare_embedded(root, generate: Callable[[Path], object]) -> Path:
    """Return ``root``, generating the data set into it first unless it is complete.

    ``generate(directory)`` writes the whole data set into an empty directory. A directory at
    ``root`` without the marker is a half-written set and is replaced.
    """
    root = Path(root)
    if is_complete(root):
        return root
    with _locked(root):
        if is_complete(root):  # another process finished it while this one waited
            return root
        print_log(f"generating the embedded data set in {root}", logger="current")
        staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}."))
        try:
            generate(staging)
            (staging / COMPLETE_MARKER).write_text("")
            if root.exists():
                shutil.rmtree(root)
            staging.rename(root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return root
