"""Aggregate the report.json files under one or more directories into a results report.

    python tools/aggregate.py DIR [DIR ...] --out OUT_DIR [--effect PERCENT] [--allow-mixed]

Writes OUT_DIR/summary.{md,html,csv,json}. A malformed report.json, or an --effect that is not
positive, ends with an error naming the file (or option) and field (exit code 2) and writes
nothing.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.common.cli import run_cli  # noqa: E402
from tasks.common.statistics import DEFAULT_EFFECT_PERCENT  # noqa: E402
from tasks.common.summary import aggregate  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="directories searched recursively for reports")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--effect", type=float, default=DEFAULT_EFFECT_PERCENT,
                        help="effect of interest in %% of the baseline's mean, for the minimum "
                             "detectable difference, seeds needed and equivalence verdicts "
                             "(default %(default)g)")
    parser.add_argument("--allow-mixed", action="store_true",
                        help="pair seeds whose runs come from different git commits (by default "
                             "such pairs are left out and flagged)")
    args = parser.parse_args()
    paths = aggregate(args.dirs, args.out, effect_percent=args.effect,
                      allow_mixed=args.allow_mixed)
    for path in paths.values():
        print(path)


if __name__ == "__main__":
    run_cli(main)
