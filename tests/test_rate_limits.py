"""Rate limits as declared: the parser (strict), the declaration's errors, the parsed form,
and the start test every store applies (RateLimit.holds_back, next_start)."""

from __future__ import annotations

import math

import pytest

from service import task
from service.rate_limits import MAX_STARTS, SPACING, RateLimit, parse_rate_limit
from service.registry import Registry, TaskType
from service.settings import Settings


@pytest.mark.parametrize(("value", "starts", "period", "text"), [
    ("10/m", 10, 60.0, "10/m"),
    ("5/s", 5, 1.0, "5/s"),
    ("100/h", 100, 3600.0, "100/h"),
    ("1/5s", 1, 5.0, "1/5s"),
    ("100/15m", 100, 900.0, "100/15m"),
    ("1/60s", 1, 60.0, "1/m"),
    ("2/24h", 2, 86400.0, "2/24h"),
    (7, 7, 1.0, "7/s"),
    (f"{MAX_STARTS}/s", MAX_STARTS, 1.0, f"{MAX_STARTS}/s"),
])
def test_the_accepted_forms(value: object, starts: int, period: float, text: str) -> None:
    limit = parse_rate_limit(value)
    assert (limit.starts, limit.period, limit.text) == (starts, period, text)
    assert parse_rate_limit(limit.text) == limit


@pytest.mark.parametrize("value", [
    "10/min", "10/d", "10 /s", " 10/s", "10/s ", "1.5/s", "10/0s", "10/", "/s", "10", "",
    "-1/s", "0/s", "10/1234567s", "\uff11/s", "10/S", 1.5, 0, -3, True, None, [10, "m"],
    MAX_STARTS + 1, f"{MAX_STARTS + 1}/h",
])
def test_anything_else_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="rate_limit"):
        parse_rate_limit(value)


def test_a_bad_declaration_names_its_task() -> None:
    async def fetch_page(url: str) -> str:
        return url

    with pytest.raises(ValueError, match=r"task 'fetch_page': rate_limit must be 'N/s'"):
        task(rate_limit="10/min")(fetch_page)  # type: ignore[typeddict-item]
    with pytest.raises(ValueError, match="task 'pages': rate_limit allows 1 to"):
        TaskType("pages", fetch_page, "async", rate_limit=0)  # type: ignore[arg-type]


def test_a_declared_limit_is_parsed_listed_and_described() -> None:
    async def fetch_page(url: str) -> str:
        return url

    limited = task(rate_limit="10/m")(fetch_page)
    plain = task(name="plain")(fetch_page)
    assert limited.task_type.rate_limit == RateLimit(10, 60.0)
    registry = Registry()
    registry.add(limited.task_type)
    registry.add(plain.task_type)
    assert registry.rate_limits() == {"fetch_page": RateLimit(10, 60.0)}
    described = limited.task_type.describe()
    assert (described["rate_limit"], described["rate"]) == ("10/m", {"starts": 10,
                                                                      "period": 60.0})
    assert (plain.task_type.describe()["rate_limit"], plain.task_type.describe()["rate"]) == (
        None, None)


def test_the_n_th_newest_start_holds_a_start_back_for_a_period_and_a_microsecond() -> None:
    limit = RateLimit(3, 1.0)
    assert not limit.holds_back(None, 5.0)  # fewer than 3 starts so far
    assert limit.holds_back(5.0, 5.0)
    assert limit.holds_back(5.0, 6.0)
    assert not limit.holds_back(5.0, 6.0 + 2 * SPACING)
    assert limit.next_start(None, 5.0) is None
    assert limit.next_start(5.0, 7.0) is None
    at = limit.next_start(5.0, 5.5)
    assert at is not None
    assert at == pytest.approx(6.0 + SPACING, abs=1e-9)
    assert not limit.holds_back(5.0, at)  # the time it reports is allowed


@pytest.mark.parametrize("nth", [1_700_000_000.123456, 1e9 + 0.1, 0.3, 1010.0])
def test_the_reported_time_is_the_first_allowed_float(nth: float) -> None:
    for limit in (RateLimit(5, 1.0), RateLimit(10, 60.0), RateLimit(1, 3600.0)):
        at = limit.next_start(nth, nth)
        assert at is not None
        assert not limit.holds_back(nth, at)
        assert limit.holds_back(nth, math.nextafter(at, -math.inf))


# -- OFFLOAD_RATE_LIMITS ------------------------------------------------------------------

def test_the_setting_is_a_json_object_of_task_names() -> None:
    loaded = Settings.load(environ={"OFFLOAD_RATE_LIMITS": '{"add": "10/m", "sleep": null}'})
    assert loaded.rate_limits == (("add", RateLimit(10, 60.0)), ("sleep", None))
    assert Settings.load(environ={}).rate_limits == ()
    assert Settings.load(config={"OFFLOAD_RATE_LIMITS": {"add": 3}}).rate_limits == (
        ("add", RateLimit(3, 1.0)),)


@pytest.mark.parametrize(("raw", "message"), [
    ('{"add": "10/min"}', "OFFLOAD_RATE_LIMITS: task 'add': rate_limit must be"),
    ('{"add": 0}', "OFFLOAD_RATE_LIMITS: task 'add': rate_limit allows 1 to"),
    ('["add", "10/m"]', "OFFLOAD_RATE_LIMITS: a JSON object of task name to rate limit"),
    ("add=10/m", "OFFLOAD_RATE_LIMITS: not JSON"),
])
def test_a_bad_setting_is_a_clear_error(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.load(environ={"OFFLOAD_RATE_LIMITS": raw})


def test_the_setting_replaces_declared_limits_without_changing_the_declared_type() -> None:
    async def fetch_page(url: str) -> str:
        return url

    declared = task(rate_limit="10/m")(fetch_page).task_type
    other = task(name="other")(fetch_page).task_type
    registry = Registry()
    registry.add(declared)
    registry.add(other)
    registry.override_rate_limits({"fetch_page": None, "other": RateLimit(2, 1.0)})
    assert registry.rate_limits() == {"other": RateLimit(2, 1.0)}
    assert registry.get("fetch_page").describe()["rate_limit"] is None
    assert registry.get("other").describe()["rate_limit"] == "2/s"
    assert declared.rate_limit == RateLimit(10, 60.0)  # other services still see its own
    late = task(name="late", rate_limit="1/h")(fetch_page).task_type
    registry.add(late)
    assert registry.rate_limits()["late"] == RateLimit(1, 3600.0)
    with pytest.raises(ValueError, match="OFFLOAD_RATE_LIMITS: no task type is registered "
                                         "as 'nope'"):
        registry.override_rate_limits({"nope": None})
