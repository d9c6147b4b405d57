"""Benchmarks of Garage in Python: ``uv run nox -s bench`` (``-- --quick`` for a short run).

Each module ``bench_*.py`` has ``run(quick: bool)`` returning either rows
``(benchmark, variant, value, unit)`` (printed as a table with each variant's ratio to
the first variant of its benchmark) or a :class:`bench._report.Outcome` (its own tables,
the targets it judges, the profiles of missed ones). ``python -m bench`` prints every table
and the targets, and writes the report to bench/results/latest.md (see bench/__main__.py).

The modules that start servers (bench_s3, bench_geo) measure our node against the
hypercorn ceiling and moto's S3 server, on trio and asyncio (``GARAGE_RUNTIME``), with a
compiled load generator fed requests signed up front (bench/_load.py). bench_s3 runs the
one-node small-object workloads in alternating trio/asyncio rounds (``--runtime-rounds``,
3 by default) and reports each runtime's median and spread, so that the runtime choice
rests on more than one run. Speed is measured here, never asserted in tests
(tests/bench checks that the tools and workloads work, at tiny sizes).

bench/results/latest.md names the commit it measured: it is written only from a clean
tree, unless ``--allow-dirty`` (and then it says DIRTY at the top).
"""
