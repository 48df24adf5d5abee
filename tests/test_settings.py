"""Settings from OFFLOAD_* variables and Quart config; bad values are clear errors."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from service.settings import Settings


def test_defaults_match_the_spec() -> None:
    s = Settings.load(config={}, environ={})
    assert s.store == "memory://"
    assert s.max_concurrency == 100
    assert s.max_body == 1_048_576
    assert s.max_queue == 10_000
    assert s.result_ttl == 3600
    assert s.max_records == 100_000
    assert s.api_tokens == ()
    assert s.shutdown_grace == 10
    assert s.task_modules == ()


def test_every_setting_reads_its_environment_variable() -> None:
    env = {"OFFLOAD_TASK_MODULES": "a.b, c.d ,,", "OFFLOAD_STORE": "memory://",
           "OFFLOAD_MAX_CONCURRENCY": "7", "OFFLOAD_MAX_BODY": "2048", "OFFLOAD_MAX_QUEUE": "9",
           "OFFLOAD_RESULT_TTL": "1.5", "OFFLOAD_MAX_RECORDS": "11",
           "OFFLOAD_API_TOKENS": "t1,t2", "OFFLOAD_SHUTDOWN_GRACE": "2.5",
           "OFFLOAD_EXPOSE_TRACEBACKS": "yes"}
    s = Settings.load(environ=env)
    assert s.task_modules == ("a.b", "c.d")
    assert (s.max_concurrency, s.max_body, s.max_queue, s.max_records) == (7, 2048, 9, 11)
    assert (s.result_ttl, s.shutdown_grace) == (1.5, 2.5)
    assert s.api_tokens == ("t1", "t2")
    assert s.expose_tracebacks is True


def test_every_field_has_an_environment_name() -> None:
    for spec in dataclasses.fields(Settings):
        default = getattr(Settings(), spec.name)
        raw: Any = {bool: str(not default), tuple: "x"}.get(type(default), "3")
        raw = {"log_format": "json", "log_level": "DEBUG",
               "schedules": '[{"name": "a", "task": "add", "every": 60}]',
               "rate_limits": '{"add": "10/m"}'}.get(spec.name, raw)
        loaded = Settings.load(environ={f"OFFLOAD_{spec.name.upper()}": raw})
        assert getattr(loaded, spec.name) != default or spec.name == "process_workers", spec.name


def test_config_wins_over_environment_and_takes_native_types() -> None:
    s = Settings.load(config={"OFFLOAD_MAX_CONCURRENCY": 3, "OFFLOAD_API_TOKENS": ["a", " b "],
                              "OFFLOAD_EXPOSE_TRACEBACKS": True},
                      environ={"OFFLOAD_MAX_CONCURRENCY": "50", "OFFLOAD_MAX_QUEUE": "5"})
    assert s.max_concurrency == 3
    assert s.max_queue == 5
    assert s.api_tokens == ("a", "b")
    assert s.expose_tracebacks is True


def test_empty_values_mean_default() -> None:
    s = Settings.load(environ={"OFFLOAD_MAX_CONCURRENCY": "", "OFFLOAD_API_TOKENS": ""})
    assert s.max_concurrency == 100
    assert s.api_tokens == ()


@pytest.mark.parametrize("raw", ["false", "0", "no", "off", "FALSE", " Off "])
def test_false_booleans(raw: str) -> None:
    assert Settings.load(environ={"OFFLOAD_EXPOSE_TRACEBACKS": raw}).expose_tracebacks is False


@pytest.mark.parametrize(("name", "raw"), [
    ("MAX_CONCURRENCY", "many"), ("MAX_CONCURRENCY", "1.5"), ("MAX_CONCURRENCY", "-1"),
    ("MAX_CONCURRENCY", "0"), ("MAX_QUEUE", "0"), ("PROCESS_WORKERS", "0"),
    ("THREAD_WORKERS", "0"), ("MAX_BODY", "0"), ("RESULT_TTL", "nan"), ("RESULT_TTL", "-5"),
    ("SHUTDOWN_GRACE", "inf"), ("SHUTDOWN_GRACE", "soon"), ("SWEEP_INTERVAL", "0"),
    ("EXPOSE_TRACEBACKS", "ture"), ("EXPOSE_TRACEBACKS", "2"),
])
def test_bad_values_name_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=f"OFFLOAD_{name}"):
        Settings.load(environ={f"OFFLOAD_{name}": raw})


def test_bad_values_are_refused_when_built_directly_too() -> None:
    with pytest.raises(ValueError, match="OFFLOAD_MAX_CONCURRENCY"):
        Settings(max_concurrency=0)
    with pytest.raises(ValueError, match="OFFLOAD_RESULT_TTL"):
        Settings(result_ttl=float("nan"))
    with pytest.raises(ValueError, match="OFFLOAD_MAX_QUEUE"):
        dataclasses.replace(Settings(), max_queue=-1)


def test_zero_is_fine_where_it_means_something() -> None:
    s = Settings(result_ttl=0, max_records=0, shutdown_grace=0, retry_backoff=0)
    assert (s.result_ttl, s.max_records, s.shutdown_grace, s.retry_backoff) == (0, 0, 0, 0)


def test_a_misspelled_variable_warns_naming_the_closest_setting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="offload.settings"):
        s = Settings.load(environ={"OFFLOAD_MAX_CONCURENCY": "5", "OFFLOAD_SHUTDOWN_GRACE": "2",
                                   "OTHER_MAX_CONCURENCY": "1"})
    assert s.max_concurrency == 100  # ignored, as the warning says
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "environment variable OFFLOAD_MAX_CONCURENCY is not an Offload setting" in warning
    assert "did you mean OFFLOAD_MAX_CONCURRENCY?" in warning


def test_a_misspelled_config_key_warns_too_and_an_unknown_one_without_a_guess(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="offload.settings"):
        Settings.load(config={"OFFLOAD_SHUTDOWN_GRAC": 1, "OFFLOAD_ZZZ_QQQ": 1, "DEBUG": True},
                      environ={})
    warnings = sorted(r.getMessage() for r in caplog.records)
    assert len(warnings) == 2
    assert "app config key OFFLOAD_SHUTDOWN_GRAC" in warnings[0]
    assert "did you mean OFFLOAD_SHUTDOWN_GRACE?" in warnings[0]
    assert "OFFLOAD_ZZZ_QQQ is not an Offload setting, so it is ignored" in warnings[1]
    assert "did you mean" not in warnings[1]


def test_every_real_setting_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    from service.settings import setting_names, unknown_names

    assert unknown_names(setting_names()) == {}


def test_the_clients_variables_are_not_called_misspelled_settings() -> None:
    from service.settings import unknown_names

    assert unknown_names(["OFFLOAD_URL", "OFFLOAD_TOKEN", "OFFLOAD_TOKENS"]) == {
        "OFFLOAD_TOKENS": "OFFLOAD_API_TOKENS"}
