"""The regression gate (`casa-eval check`): thresholds, baseline comparisons, invariants, JUnit."""

from casa_eval.check.gate import CheckResult, Run, exit_code, run_checks
from casa_eval.check.thresholds import Thresholds

__all__ = ["CheckResult", "Run", "Thresholds", "exit_code", "run_checks"]
