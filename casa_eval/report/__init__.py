"""The HTML report (`casa-eval report`)."""

from casa_eval.report.build import build_report

__all__ = ["build_report"]
