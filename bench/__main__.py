"""`python -m bench [BENCHMARK] [options]`: with no benchmark named, run them all.

Each benchmark is a module with `add_arguments(parser)` and `run(args)`, registered in BENCHMARKS;
later ones (identity matching, segment subscriptions) are added there as sub-commands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

from bench import execution, foundation, hostile_queries, identity_matching, merges, nested_lists, segments, serving


@dataclass(frozen=True, slots=True)
class Benchmark:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]


BENCHMARKS: dict[str, Benchmark] = {
    "foundation": Benchmark(
        "store build, ingest throughput and profileByIdentifier latency, each beside its floor",
        foundation.add_arguments,
        foundation.run,
    ),
    "identity": Benchmark(
        "fuzzy merge candidates: precision, recall and F1 on synthetic people; whole-store and one-profile cost",
        identity_matching.add_arguments,
        identity_matching.run,
    ),
    "segments": Benchmark(
        "issue 14's subscription targets on graphql-ws (node): 1,000 subscribers of one segment, 10,000 connecting at "
        "once, 10,000 each watching its own profile (p50/p99, missed, stray, refused); batch evaluation at scale",
        segments.add_arguments,
        segments.run,
    ),
    "hostile": Benchmark(
        "hostile GraphQL documents (OWASP classes, 1 MiB shapes): time to refusal and /healthz latency meanwhile",
        hostile_queries.add_arguments,
        hostile_queries.run,
    ),
    "serving": Benchmark(
        "issue 13's targets under load from wrk and graphql-ws: reads while ingesting, HTTP ingestion beside SQL, "
        "50 mixed clients with subscribers, first start; each beside its floor",
        serving.add_arguments,
        serving.run,
    ),
    "nested": Benchmark(
        "nested lists (segment events' segments and profiles, segments' members' interactions) beside the flat "
        "query, the server timed from outside by wrk; each beside its floor",
        nested_lists.add_arguments,
        nested_lists.run,
    ),
    "merges": Benchmark(
        "a visitor merged into a customer with a long history (the embedded store's writer held) beside the same "
        "events ingested into the customer",
        merges.add_arguments,
        merges.run,
    ),
    "execution": Benchmark(
        "issue 14's personalisation query through the server (one worker, one core, wrk, 8 connections) beside a "
        "hand-written endpoint (the floor): req/s ratio, p99, compiled vs graphql-core executions",
        execution.add_arguments,
        execution.run,
    ),
}


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = main.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for name, benchmark in BENCHMARKS.items():
        sub = commands.add_parser(name, help=benchmark.help, description=benchmark.help)
        benchmark.add_arguments(sub)
    commands.add_parser("all", help="every benchmark with its default (full) settings (the default)")
    return main


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.benchmark in (None, "all"):
        for name, benchmark in BENCHMARKS.items():
            sub = argparse.ArgumentParser(prog=f"python -m bench {name}")
            benchmark.add_arguments(sub)
            benchmark.run(sub.parse_args([]))
        return
    BENCHMARKS[args.benchmark].run(args)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt:
        sys.exit(130)
