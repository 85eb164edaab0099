"""radvigil's benchmarks: scripts that print tables and write JSON, run from the repo root.

Run one as ``python -m bench.NAME`` (for example ``python -m bench.train_speed --quick``); tests
import their logic as ``bench.NAME``.
"""
