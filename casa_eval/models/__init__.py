"""lmms-eval adapters: every casa-eval model behind one `lmms` subclass (see `adapter.py`)."""
