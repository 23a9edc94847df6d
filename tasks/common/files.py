"""File helpers: atomic writes, data errors that name the file and the field, and the checks
of data files and config values that several tasks share."""
from __future__ import annotations

import json
import math
import os
import tempfile
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np


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


def finite_or_null(value):
    """``value`` with every non-finite float replaced by None: JSON has no NaN or infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(item) for item in value]
    return value


def write_json_atomic(path, obj: Any) -> None:
    """Write ``obj`` as strict JSON: a NaN or infinity is written as null (undefined), never as
    the bare ``NaN``/``Infinity`` that other JSON readers refuse."""
    text = json.dumps(finite_or_null(obj), indent=2, allow_nan=False)
    write_atomic(path, (text + "\n").encode())


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
    except UnicodeDecodeError as err:
        raise DataFormatError(path, f"byte {err.start}", "not UTF-8 text") from None
    except (OSError, RecursionError) as err:  # a directory, unreadable, nested too deeply
        raise DataFormatError(path, what, f"cannot be read: {err!r}") from None


def read_image_size(path, source, field: str) -> tuple[int, int]:
    """``(width, height)`` from the header of the image file ``path``, without decoding it.

    A missing, empty, truncated or unrecognised file is a DataFormatError naming ``source``
    (the annotation file or folder that lists the image) and ``field``, so a bad image stops
    the run when its data set is built instead of in a data-loader worker later.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise DataFormatError(source, field, f"image {path} not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        # PIL reports some broken headers as SyntaxError (e.g. PNG chunk errors)
        raise DataFormatError(source, field, f"unreadable image {path}: {err}") from None


def load_arrays(path, field: str, npz: bool) -> dict:
    """The arrays of a ``.npz`` (``npz=True``) or the one array of a ``.npy`` (key ``""``), read
    without pickles; a missing, empty or corrupt file is a DataFormatError naming it."""
    if not os.path.isfile(path):
        raise DataFormatError(path, field, "not found")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not npz:
            if not isinstance(loaded, np.ndarray):
                raise ValueError("an .npz archive, expected one .npy array")
            return {"": loaded}
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("one .npy array, expected an .npz archive")
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, SyntaxError,
            tokenize.TokenError) as err:  # a mangled header reaches numpy's header parser
        raise DataFormatError(path, field, f"cannot be read: {err or type(err).__name__}") from None


def numeric_array(value, source, field: str, shape=None):
    """``value`` as a numpy array of finite numbers (booleans, integers or floats); strings,
    objects, NaN and infinity are a DataFormatError naming ``source`` and ``field``.
    ``shape``: the required shape, ``None`` entries free."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:  # ragged nested lists
        raise DataFormatError(source, field, f"not an array: {err}") from None
    if array.dtype.kind not in "biuf":
        raise DataFormatError(source, field, f"expected numbers, got an array of {array.dtype}")
    if shape is not None and (array.ndim != len(shape) or any(
            s is not None and s != a for s, a in zip(shape, array.shape))):
        raise DataFormatError(source, field, f"has shape {array.shape}, expected "
                              f"({', '.join('*' if s is None else str(s) for s in shape)})")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise DataFormatError(source, field, "has non-finite values")
    return array


def check_setting(field: str, value, *, integer: bool = False, minimum=None, below=None):
    """``value`` of the config entry ``field`` if it is a number (an integer when ``integer``)
    with ``minimum <= value < below``; otherwise a DataFormatError naming ``<config>``."""
    kinds = (int,) if integer else (int, float)
    if (isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value)
            or (minimum is not None and value < minimum)
            or (below is not None and value >= below)):
        wanted = "an integer" if integer else "a number"
        bounds = "".join(text for text in (
            "" if minimum is None else f" >= {minimum}",
            "" if below is None else f"{' and' if minimum is not None else ''} < {below}"))
        raise DataFormatError("<config>", field, f"expected {wanted}{bounds}, got {value!r}")
    return value
