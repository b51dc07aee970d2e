"""Evaluation data that casa-eval ships or generates itself.

`casa_eval.data.synthetic` renders small DocVQA-like and ChartQA-like sets offline, deterministically, into an
on-disk cache that lmms-eval task YAMLs (`tasks/synth_docvqa`, `tasks/synth_chartqa`) load.
"""
