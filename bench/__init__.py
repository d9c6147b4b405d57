"""Benchmarks of Garage in Python: ``uv run nox -s bench`` (``-- --quick`` for a short run).

Each module ``bench_*.py`` has ``run(quick: bool) -> list[Row]`` where a row is
``(benchmark, variant, value, unit)``; the runner prints them as tables with each variant's
ratio to the first variant of its benchmark. Speed is measured here, never asserted in tests.
"""
