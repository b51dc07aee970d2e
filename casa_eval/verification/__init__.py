"""`casa-eval verify`: a real checkpoint's own generation against casa-eval's streaming adapter, on built-in
conversations, and the verdicts kept per machine (`store.py`) that `run` and `profile` consult."""

from casa_eval.verification.checks import TOLERANCES, Check
from casa_eval.verification.run import Verification, verify_model

__all__ = ["TOLERANCES", "Check", "Verification", "verify_model"]
