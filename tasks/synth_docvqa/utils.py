"""lmms-eval loads this file by path (`!function utils.x` in the YAML); the hooks live in casa_eval."""

from casa_eval.data.synthetic.lmms import doc_to_visual, process_docs

__all__ = ["doc_to_visual", "process_docs"]
