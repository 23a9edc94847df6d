"""Pieces every task shares: the run hooks, the report, the variant registry and file helpers.

Importing registers the hooks (``DropKeyHook``, ``PlainCheckpointHook``, ``SafeCheckpointHook``,
``BenchReportHook``) with mmengine's registry and changes no other global state.
"""
from .files import DataFormatError, write_json_atomic
from .checkpoint import PlainCheckpointHook, SafeCheckpointHook
from .hooks import DropKeyHook, resolve_dropkey
from .report import REPORT_NAME, BenchReportHook, read_report
from .variants import BASELINES, VARIANTS, Variant, get_variant

__all__ = ["DataFormatError", "write_json_atomic", "DropKeyHook", "PlainCheckpointHook",
           "SafeCheckpointHook", "resolve_dropkey", "BenchReportHook", "REPORT_NAME",
           "read_report", "BASELINES", "VARIANTS", "Variant", "get_variant"]
