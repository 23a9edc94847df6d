"""Pieces every task shares: the runner builder, the report hook and file helpers."""
from .files import DataFormatError, write_json_atomic
from .report import BenchReportHook, REPORT_NAME, read_report
from .runner import build_runner, dropkey_options

__all__ = ["DataFormatError", "write_json_atomic", "BenchReportHook", "REPORT_NAME",
           "read_report", "build_runner", "dropkey_options"]
