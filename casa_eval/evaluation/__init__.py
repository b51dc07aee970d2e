"""Accuracy evaluation through lmms-eval, and the `casa-eval run` orchestration."""
