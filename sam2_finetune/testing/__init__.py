"""Helpers for tests, the demo and the benchmarks, not for the pipeline itself.

:mod:`sam2_finetune.testing.synthetic` writes SAM2 exports exactly as the web demo does, from
shapes described in code (``sample_data/generate.py`` and the benchmarks use it).
"""
