"""Prometheus metrics of one task service, in a registry of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf"))
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, float("inf"))


class Metrics:
    """Counters and histograms updated on the task path; gauges read live on each scrape."""

    def __init__(self, gauges: Callable[[], dict[str, float]]) -> None:
        self.registry = CollectorRegistry()
        self.submitted = Counter("offload_tasks_submitted", "Tasks accepted.", ["task"],
                                 registry=self.registry)
        self.finished = Counter("offload_tasks_finished", "Tasks that reached a terminal status.",
                                ["task", "status"], registry=self.registry)
        self.retried = Counter("offload_tasks_retried", "Attempts that failed and will be retried.",
                               ["task"], registry=self.registry)
        self.rejected = Counter("offload_submissions_rejected", "Submissions refused.",
                                ["reason"], registry=self.registry)
        self.duration = Histogram("offload_task_duration_seconds", "Run time of one attempt.",
                                  ["task"], buckets=DURATION_BUCKETS, registry=self.registry)
        self.loop_lag = Histogram("offload_event_loop_lag_seconds",
                                  "How late the event loop woke the watchdog's timer.",
                                  buckets=LAG_BUCKETS, registry=self.registry)
        self.loop_blocked = Counter("offload_event_loop_blocked",
                                    "Episodes of a blocked event loop, by the task type "
                                    "that blocked it.", ["task"], registry=self.registry)
        self.registry.register(_LiveGauges(gauges))
        self._children: dict[str, TaskMetrics] = {}

    def of(self, task: str) -> TaskMetrics:
        """The children of one task type (``labels()`` costs a look-up and a lock per call:
        the task path asks for them once per type, not once per task)."""
        children = self._children.get(task)
        if children is None:
            children = self._children[task] = TaskMetrics(self, task)
        return children

    def exposition(self) -> bytes:
        """The text format, for ``GET /metrics``."""
        return generate_latest(self.registry)


class TaskMetrics:
    """The metric children of one task type."""

    __slots__ = ("_finished", "_metrics", "_task", "duration", "retried", "submitted")

    def __init__(self, metrics: Metrics, task: str) -> None:
        self._metrics = metrics
        self._task = task
        self.submitted = metrics.submitted.labels(task)
        self.retried = metrics.retried.labels(task)
        self.duration = metrics.duration.labels(task)
        self._finished: dict[str, Any] = {}

    def finished(self, status: str) -> Any:
        child = self._finished.get(status)
        if child is None:
            child = self._finished[status] = self._metrics.finished.labels(self._task, status)
        return child


class _LiveGauges(Collector):
    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        for name, value in self._read().items():
            gauge = GaugeMetricFamily(f"offload_{name}", f"Current {name.replace('_', ' ')}.")
            gauge.add_metric([], value)
            yield gauge
