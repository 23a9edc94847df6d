"""File helpers: strict JSON out, one-line errors in."""
import json
import math

import numpy as np

from tasks.common.files import write_json_atomic


def test_json_is_written_strict_with_undefined_numbers_as_null(tmp_path):
    path = tmp_path / "out.json"
    write_json_atomic(path, {"a": math.nan, "b": [1.5, -math.inf, np.float64("inf")],
                             "c": {"d": (2, math.inf)}, "e": "NaN"})
    text = path.read_text()
    assert "NaN," not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda name: 1 / 0) == {
        "a": None, "b": [1.5, None, None], "c": {"d": [2, None]}, "e": "NaN"}
