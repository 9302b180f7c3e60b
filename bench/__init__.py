"""Benchmarks of the CDP core: `python -m bench` (all), `python -m bench foundation --quick` (seconds).

Every figure is printed next to a floor measured in the same run (never against numbers from another
run): the same work without GraphQL/HTTP, or the same HTTP round trip without the application.
Nothing is cached between runs: each run builds its store in a temporary directory and removes it.
"""
