"""Prometheus metrics of one task service, in a registry of its own."""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf"))
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, float("inf"))


class Metrics:
    """Counters and histograms updated on the task path; gauges read live on each scrape."""

    def __init__(self, gauges: Callable[[], dict[str, float]]) -> None:
        self.registry = CollectorRegistry()
        self.rejected = Counter("offload_submissions_rejected", "Submissions refused.",
                                ["reason"], registry=self.registry)
        self.loop_lag = Histogram("offload_event_loop_lag_seconds",
                                  "How late the event loop woke the watchdog's timer.",
                                  buckets=LAG_BUCKETS, registry=self.registry)
        self.loop_blocked = Counter("offload_event_loop_blocked",
                                    "Episodes of a blocked event loop, by the task type "
                                    "that blocked it.", ["task"], registry=self.registry)
        self.registry.register(_LiveGauges(gauges))
        self._children: dict[str, TaskMetrics] = {}
        self.registry.register(_TaskCollector(self._children))

    def of(self, task: str) -> TaskMetrics:
        """The figures of one task type, made on first use."""
        children = self._children.get(task)
        if children is None:
            children = self._children[task] = TaskMetrics()
        return children

    def exposition(self) -> bytes:
        """The text format, for ``GET /metrics``."""
        return generate_latest(self.registry)


class TaskMetrics:
    """The figures of one task type, as plain numbers: the task path adds to them on the
    event loop's thread only, so prometheus-client's lock per update (a few of them per
    task) buys nothing; a scrape reads them through :class:`_TaskCollector`."""

    __slots__ = ("buckets", "created", "duration_sum", "finished", "retried", "submitted")

    def __init__(self) -> None:
        self.created = time.time()  # the *_created series, as prometheus-client writes them
        self.submitted = 0
        self.retried = 0
        self.finished: dict[str, int] = {}
        self.buckets = [0] * len(DURATION_BUCKETS)  # not cumulative: one per bucket
        self.duration_sum = 0.0

    def finish(self, status: str) -> None:
        """One more task ended with ``status`` (a :class:`Status` is a ``str``)."""
        self.finished[status] = self.finished.get(status, 0) + 1

    def observe(self, seconds: float) -> None:
        """One attempt's run time into the duration histogram."""
        self.buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.duration_sum += seconds


class _TaskCollector(Collector):
    """Exposes every :class:`TaskMetrics` as Prometheus counters and a histogram."""

    def __init__(self, children: dict[str, TaskMetrics]) -> None:
        self._children = children

    def collect(self) -> Iterable[Metric]:
        submitted = CounterMetricFamily("offload_tasks_submitted", "Tasks accepted.",
                                        labels=["task"])
        finished = CounterMetricFamily("offload_tasks_finished",
                                       "Tasks that reached a terminal status.",
                                       labels=["task", "status"])
        retried = CounterMetricFamily("offload_tasks_retried",
                                      "Attempts that failed and will be retried.",
                                      labels=["task"])
        duration = HistogramMetricFamily("offload_task_duration_seconds",
                                         "Run time of one attempt.", labels=["task"])
        for task, figures in list(self._children.items()):
            created = figures.created
            submitted.add_metric([task], figures.submitted, created)
            retried.add_metric([task], figures.retried, created)
            for status, count in list(figures.finished.items()):
                finished.add_metric([task, status], count, created)
            cumulative = itertools.accumulate(figures.buckets)
            duration.add_metric([task], [(_bound(b), c) for b, c in zip(
                DURATION_BUCKETS, cumulative, strict=True)], figures.duration_sum)
        return [submitted, finished, retried, duration]


def _bound(bucket: float) -> str:
    return "+Inf" if bucket == float("inf") else repr(float(bucket))


class _LiveGauges(Collector):
    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        for name, value in self._read().items():
            gauge = GaugeMetricFamily(f"offload_{name}", f"Current {name.replace('_', ' ')}.")
            gauge.add_metric([], value)
            yield gauge
