"""Benchmark scenarios (`make bench`, `python -m bench`); results go to BENCHMARKS.md.

Each scenario times a subject against a baseline measured in the same run, on the
same machine and the same data, and reports the ratio (the median over several
runs): absolute times on a shared machine are noise, side-by-side ratios much less.

- bench/servers.py: the PostgreSQL and Redis to run on, found or started as the tests do
- bench/expiry.py: B4, 1,000,000 due payments expired by the sweep ÷ one raw UPDATE
- bench/report.py: bench/results.json -> BENCHMARKS.md
"""
