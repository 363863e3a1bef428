"""Benchmark scripts (``python benchmarks/NAME.py`` or ``python -m benchmarks.NAME``); their
shared helpers are in :mod:`benchmarks.common`."""
