"""File helpers: atomic writes and data errors that name the file and the field."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


class DataFormatError(ValueError):
    """Bad input data. The message names the file and the field (or entry) at fault."""

    def __init__(self, path, field: str, problem: str):
        self.path, self.field, self.problem = str(path), field, problem
        super().__init__(f"{path}: {field}: {problem}")


def write_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json_atomic(path, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def load_json(path, what: str = "file"):
    """Load JSON, turning a parse error into a DataFormatError naming the file and position."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataFormatError(path, what, "file not found") from None
    except json.JSONDecodeError as err:
        raise DataFormatError(path, f"line {err.lineno} column {err.colno}",
                              f"malformed JSON: {err.msg}") from None
