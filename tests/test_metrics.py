from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from service.metrics import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.exposition().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_task_figures_are_exposed_as_prometheus_counters_and_a_histogram() -> None:
    metrics = Metrics(lambda: {})
    add = metrics.of("add")
    add.submitted += 3
    add.retried += 1
    add.finish("succeeded")
    add.finish("succeeded")
    add.finish("failed")
    for seconds in (0.001, 0.0011, 1000.0):  # on a bound, just above it, past the last one
        add.observe(seconds)
    got = samples(metrics)
    task = ("task", "add")
    assert got[("offload_tasks_submitted_total", frozenset({task}))] == 3
    assert got[("offload_tasks_submitted_created", frozenset({task}))] > 0
    assert got[("offload_tasks_retried_total", frozenset({task}))] == 1
    assert got[("offload_tasks_finished_total",
                frozenset({task, ("status", "succeeded")}))] == 2
    assert got[("offload_tasks_finished_total", frozenset({task, ("status", "failed")}))] == 1

    def bucket(le: str) -> float:
        return got[("offload_task_duration_seconds_bucket", frozenset({task, ("le", le)}))]
    assert (bucket("0.001"), bucket("0.005"), bucket("900.0"), bucket("+Inf")) == (1, 2, 2, 3)
    assert got[("offload_task_duration_seconds_count", frozenset({task}))] == 3
    assert abs(got[("offload_task_duration_seconds_sum", frozenset({task}))] - 1000.0021) < 1e-9


def test_figures_are_kept_per_task_type() -> None:
    metrics = Metrics(lambda: {})
    assert metrics.of("a") is metrics.of("a")
    metrics.of("a").submitted += 1
    got = samples(metrics)
    assert got[("offload_tasks_submitted_total", frozenset({("task", "a")}))] == 1
    assert ("offload_tasks_submitted_total", frozenset({("task", "b")})) not in got
