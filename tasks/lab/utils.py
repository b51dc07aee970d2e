"""lmms-eval loads this file by path (`!function utils.x` in the YAMLs); the hooks live in casa_eval."""

from casa_eval.data.lab.lmms import doc_to_text, doc_to_visual, process_docs, process_results

__all__ = ["doc_to_text", "doc_to_visual", "process_docs", "process_results"]
