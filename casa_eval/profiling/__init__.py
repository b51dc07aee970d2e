"""The streaming profiler: time and memory per conversation turn, for every mechanism, on CPU and GPU.

Importable without lmms-eval and plotly (the lent GPU machines have neither).
"""
