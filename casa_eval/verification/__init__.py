"""`casa-eval verify`: a real checkpoint's own generation against casa-eval's streaming adapter, on built-in
conversations (`run.py`), and the verdicts kept per machine (`store.py`) that `run` and `profile` consult.
The package imports nothing heavy: `profile` consults the store without lmms-eval installed."""
