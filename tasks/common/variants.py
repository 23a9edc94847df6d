"""The benchmark's vocabulary: a variant label names a core method, a schedule and a base ratio.

A config selects one with ``dropkey = dict(variant='dropkey-dec')`` and may override any of its
fields (``dropkey.drop_ratio=0.2``); the suite, the report and the aggregation's ordering and
baselines read the same table. Labels are the directory names of a suite's runs, so they are
restricted to a path-safe alphabet.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Optional

LABEL_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")


@dataclass(frozen=True)
class Variant:
    """What a label stands for: ``inject_dropkey``'s method, schedule and base ratio."""

    method: str
    schedule: str
    drop_ratio: float
    block_size: Optional[int] = None
    description: str = ""

    def injection(self) -> dict:
        """The ``inject_dropkey`` keyword arguments of this variant."""
        options = {key: value for key, value in asdict(self).items()
                   if key != "description" and value is not None}
        return options


VARIANTS: dict[str, Variant] = {
    "none": Variant("none", "constant", 0.0, description="no attention regularisation"),
    "attndrop": Variant("attn_drop", "constant", 0.1,
                        description="dropout on the softmax weights, rescaled by 1/(1-p); the "
                                    "paper's ImageNet baseline"),
    "dropkey-const": Variant("dropkey", "constant", 0.1,
                             description="DropKey, the same ratio in every layer"),
    "dropkey-dec": Variant("dropkey", "linear_decrease", 0.1,
                           description="DropKey, ratio falling linearly with depth to 0 (the "
                                       "paper's choice)"),
    "dropkey-inc": Variant("dropkey", "linear_increase", 0.1,
                           description="DropKey, ratio rising linearly with depth from 0"),
    "dropkey-block": Variant("dropkey_block", "linear_decrease", 0.1, block_size=3,
                             description="structured DropKey: 3x3 windows of the key grid, "
                                         "decreasing"),
    "dropkey-column": Variant("dropkey_column", "linear_decrease", 0.1,
                              description="column-wise DropKey (HiddenKey): the same keys dropped "
                                          "for every query of a head, decreasing"),
    "drophead": Variant("drophead", "constant", 0.1,
                        description="DropHead: whole heads dropped at the attention output, "
                                    "survivors rescaled by 1/(1-p)"),
}
BASELINES = ("none", "attndrop")  # every other variant is compared with these, paired by seed


def check_label(label: str, where: str = "variant") -> str:
    """``label`` if it is path-safe; a ValueError naming ``where`` otherwise."""
    if not isinstance(label, str) or not LABEL_PATTERN.match(label):
        raise ValueError(f"{where}: {label!r} is not a variant label (lower-case letters, digits "
                         "and . + -, starting with a letter or digit)")
    return label


def get_variant(label: str) -> Variant:
    check_label(label)
    if label not in VARIANTS:
        raise ValueError(f"unknown variant {label!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[label]


def variant_order(label: str) -> tuple:
    """Sort key: registry order for the known variants, then the others alphabetically."""
    labels = list(VARIANTS)
    return (labels.index(label) if label in labels else len(labels), label)
