"""Prometheus metrics, one registry per server (tests build many servers in one process). The
transport records requests and operations; `profiles_changed` listens to every profile change
(app/services/profile_changes.py); the segment bus reports membership changes; gauges read live
values (subscriptions, connections) when scraped.

Served by several worker processes (app/workers.py), a scrape reaches one of them, chosen by the
kernel: each answered with its own counters, and they jumped up and down between scrapes. The
supervisor then names a folder in PROMETHEUS_MULTIPROC_DIR, which prometheus_client's multiprocess
mode uses to keep every process's values in files; any worker's answer is the whole server's:
counters and histograms summed over the workers, gauges summed over the live ones."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from app.processes import is_alive
from app.services.profile_changes import Cause, ProfilesChanged

# Label values remembered by `child`, and operation names given their own series (the rest: "other").
CHILDREN_KEPT = 1024
OPERATION_NAMES_KEPT = 100
# Seconds: a profile read takes milliseconds, an event batch tens to hundreds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SHARED_DIR = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client when its first metric is made
_LIVE_FILE = re.compile(r"gauge_live\w*_(\d+)\.db$")


def shared_dir() -> str | None:
    """The folder the server's processes keep their values in; None: one process, its own registry."""
    return os.environ.get(SHARED_DIR)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "cdp_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.operation_seconds = Histogram(
            "cdp_graphql_operation_seconds",
            "GraphQL operation latency by type and name",
            ["type", "name"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.graphql_executions = Counter(
            "cdp_graphql_executions",
            "GraphQL operations by executor: a compiled plan (graphql_schema/compiled*.py) or graphql-core",
            ["executor"],
            registry=self.registry,
        )
        self.events = Counter(
            "cdp_events_ingested", "Ingested events by type and result", ["type", "result"], registry=self.registry
        )
        self.merges = Counter(
            "cdp_merges", "Merges (automatic ones included) and unmerges", ["kind"], registry=self.registry
        )
        self.profile_changes = Counter(
            "cdp_profile_changes",
            "Profiles changed, by cause (a merge counts each profile)",
            ["cause"],
            registry=self.registry,
        )
        self.segment_changes = Counter(
            "cdp_segment_membership_changes", "Segment entries and exits", ["change"], registry=self.registry
        )
        self.subscriptions = Gauge(
            "cdp_active_subscriptions",
            "Open segment subscriptions",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.websockets = Gauge(
            "cdp_websocket_connections",
            "Open WebSocket connections",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.waiting_requests = Gauge(
            "cdp_http_requests_waiting",
            "HTTP requests waiting for their turn to start (app/arrival_order.py)",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.subscription_messages = Counter(
            "cdp_subscription_messages",
            "graphql-transport-ws next messages sent, by how the payload's JSON was had: encoded for the "
            "message, reused (encoded once for its group of subscribers asking the same), or broadcast "
            "(written from the group's answer without executing it again): graphql_schema/broadcast.py",
            ["how"],
            registry=self.registry,
        )
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._operation_names: set[str] = set()
        self._watched: list[tuple[Gauge, Callable[[], int]]] = []

    def child(self, metric: MetricWrapperBase, *values: str) -> Any:
        """`metric.labels(*values)`, remembered: prometheus_client looks a child up under a lock on
        every call, a few percent of the CPU of a profile read. Bounded: past CHILDREN_KEPT label sets
        (method names are the client's) children are looked up each time."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = metric.labels(*values)
            if len(self._children) < CHILDREN_KEPT:
                self._children[key] = found
        return found

    def operation_name(self, name: str | None) -> str:
        """The operation's name as a label value: clients choose names, and each new value would be a
        new series kept for ever; past the first OPERATION_NAMES_KEPT names, "other"."""
        name = (name or "anonymous")[:64]
        if name in self._operation_names:
            return name
        if len(self._operation_names) < OPERATION_NAMES_KEPT:
            self._operation_names.add(name)
            return name
        return "other"

    async def profiles_changed(self, changes: Sequence[ProfilesChanged]) -> None:
        """The listener: every committed write, whoever made it."""
        for change in changes:
            self.profile_changes.labels(change.cause.value).inc(len(change.profile_ids))
            if change.cause in (Cause.MERGE, Cause.UNMERGE):  # one change per merge or unmerge
                self.merges.labels(change.cause.value).inc()

    def watch_subscriptions(self, count: Callable[[], int]) -> None:
        self._watch(self.subscriptions, count)

    def watch_waiting_requests(self, count: Callable[[], int]) -> None:
        self._watch(self.waiting_requests, count)

    def _watch(self, gauge: Gauge, count: Callable[[], int]) -> None:
        gauge.set_function(count)  # one process: read when scraped
        self._watched = [(g, c) for g, c in self._watched if g is not gauge] + [(gauge, count)]

    def publish_live_values(self) -> None:
        """Write the watched gauges' values where the other processes read them (multiprocess mode
        reads files only: a function gauge would show nothing). The server calls it every second."""
        for gauge, count in self._watched:
            gauge.set(count())

    def exposition(self) -> bytes:
        folder = shared_dir()
        if folder is None and not _BULK_FOLDERS:
            return generate_latest(self.registry)
        if folder is None:  # one process and its bulk process: the sums of both
            return generate_latest(_Summed([self.registry, *map(_kept_in, _BULK_FOLDERS)]))
        self.publish_live_values()
        return generate_latest(_kept_in(folder))


# One server process (no shared folder) keeps its own values in memory: multiprocess mode costs each
# request ~5% (bench execution, 0.60x against 0.64x of its floor). Its bulk process (app/bulk_process.py)
# keeps its values in a folder of its own, named here, which this process's /metrics adds in.
_BULK_FOLDERS: list[str] = []


def count_bulk_process(folder: str) -> None:
    """This process's /metrics also counts the values kept in `folder` (its bulk process's)."""
    if folder not in _BULK_FOLDERS:
        _BULK_FOLDERS.append(folder)


def _kept_in(folder: str) -> CollectorRegistry:
    """The values the processes keep in `folder`, those of dead processes' live gauges left out."""
    for path in glob.glob(os.path.join(folder, "gauge_live*.db")):  # a worker that died: not live
        if (found := _LIVE_FILE.search(path)) and not is_alive(int(found.group(1))):
            mark_process_dead(int(found.group(1)), folder)  # type: ignore[no-untyped-call]
    everyone = CollectorRegistry()
    MultiProcessCollector(everyone, folder)  # type: ignore[no-untyped-call]
    return everyone


class _Summed:
    """Registries' metrics as one: the samples of a name and labels summed (a `_created` time: the
    earliest), as multiprocess mode sums the processes' values."""

    def __init__(self, registries: Sequence[CollectorRegistry]) -> None:
        self._registries = registries

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for registry in self._registries:
            for family in registry.collect():
                families.setdefault(family.name, Metric(family.name, family.documentation, family.type, family.unit))
                summed = values.setdefault(family.name, {})
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    if key not in summed:
                        summed[key] = sample.value
                    elif sample.name.endswith("_created"):
                        summed[key] = min(summed[key], sample.value)
                    else:
                        summed[key] += sample.value
        for name, family in families.items():
            for (sample_name, labels), value in values[name].items():
                family.add_sample(sample_name, dict(labels), value)
            yield family
