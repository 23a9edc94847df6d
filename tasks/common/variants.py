"""The benchmark's vocabulary: a variant label names a core method, a schedule and a base ratio.

A config selects one with ``dropkey = dict(variant='dropkey-dec')`` and may override any of its
fields (``dropkey.drop_ratio=0.2``); the suite, the report and the aggregation's ordering and
baselines read the same table. Labels are the directory names of a suite's runs, so they are
restricted to a path-safe alphabet.

A label may carry its base ratio: ``dropkey-dec-p0.3`` is ``dropkey-dec`` at ratio 0.3. A
ratio sweep then needs no new table entry and no new config, and its runs stay apart in every
directory, report and table, because the label differs.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Optional

LABEL_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
RATIO_SUFFIX = re.compile(r"^(?P<base>.+)-p(?P<ratio>0(?:\.[0-9]+)?)$")


@dataclass(frozen=True)
class Variant:
    """What a label stands for: ``inject_dropkey``'s method, schedule and base ratio."""

    method: str
    schedule: str
    drop_ratio: float
    block_size: Optional[int] = None
    description: str = ""
    # the last ``dropkey.finetune_epochs`` epochs (a config value: it belongs to the task's
    # schedule) train with the regulariser off: the paper's short fine-tune without DropKey
    finetune_tail: bool = False

    def injection(self) -> dict:
        """The ``inject_dropkey`` keyword arguments of this variant."""
        options = {key: value for key, value in asdict(self).items()
                   if key not in ("description", "finetune_tail") and value is not None}
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
    "dropkey-cross": Variant("dropkey_cross", "linear_decrease", 0.1,
                             description="structured DropKey: whole rows and columns of the key "
                                         "grid, decreasing"),
    "dropkey-dec-ft": Variant("dropkey", "linear_decrease", 0.1, finetune_tail=True,
                              description="dropkey-dec, then a fine-tune tail with the regulariser "
                                          "off (the paper's inference alignment)"),
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


def split_label(label: str) -> tuple[str, Optional[float]]:
    """(base label, ratio the label carries or None): ``dropkey-dec-p0.3`` -> (dropkey-dec, 0.3)."""
    match = RATIO_SUFFIX.match(label) if label not in VARIANTS else None
    return (match["base"], float(match["ratio"])) if match else (label, None)


def get_variant(label: str) -> Variant:
    """The variant of ``label``, with the ratio a ``-p<ratio>`` suffix gives."""
    check_label(label)
    base, ratio = split_label(label)
    if base not in VARIANTS:
        raise ValueError(f"unknown variant {label!r}; known: {', '.join(VARIANTS)}, each "
                         "optionally with a ratio suffix such as -p0.2")
    variant = VARIANTS[base]
    if ratio is None:
        return variant
    if variant.method == "none":
        raise ValueError(f"variant {label!r}: {base!r} has no ratio to set")
    return replace(variant, drop_ratio=ratio)


def finetune_counterpart(label: str) -> Optional[str]:
    """The label a fine-tune-tail variant is compared with: the registry variant it equals
    without the tail, at the same ratio (``dropkey-dec-ft-p0.3`` -> ``dropkey-dec-p0.3``);
    None for any other label."""
    base, _ = split_label(label)
    variant = VARIANTS.get(base)
    if variant is None or not variant.finetune_tail:
        return None
    for other_label, other in VARIANTS.items():
        if not other.finetune_tail and other.injection() == variant.injection():
            return other_label + label[len(base):]
    return None


def variant_order(label: str) -> tuple:
    """Sort key: registry order of the base label, then its ratio, then unknown labels
    alphabetically."""
    labels = list(VARIANTS)
    base, ratio = split_label(label)
    if base not in labels:
        return (len(labels), -1.0, label)
    return (labels.index(base), -1.0 if ratio is None else ratio, label)
