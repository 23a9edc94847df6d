"""Aggregate the report.json files under one or more directories into a results report.

    python tools/aggregate.py DIR [DIR ...] --out OUT_DIR

Writes OUT_DIR/summary.{md,html,csv,json}. A malformed report.json ends with an error naming the
file and field (exit code 2) and writes nothing.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.common.summary import aggregate  # noqa: E402
from tasks.common.cli import run_cli  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="directories searched recursively for reports")
    parser.add_argument("--out", required=True, help="output directory")
    args = parser.parse_args()
    paths = aggregate(args.dirs, args.out)
    for path in paths.values():
        print(path)


if __name__ == "__main__":
    run_cli(main)
