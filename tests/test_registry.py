"""Task types: argument binding and validation, parameter schemas, option checks."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from service.errors import InvalidSubmission, UnknownTaskType
from service.registry import Registry, TaskType, default_executor


def call(task_type: TaskType, args: list[Any], kwargs: dict[str, Any] | None = None) -> Any:
    bound = task_type.bind(args, kwargs or {})
    return task_type.fn(*bound.args, **bound.kwargs)


def errors_of(task_type: TaskType, args: list[Any], kwargs: dict[str, Any] | None = None
              ) -> dict[str, str]:
    with pytest.raises(InvalidSubmission) as caught:
        task_type.bind(args, kwargs or {})
    return {e.field: e.message for e in caught.value.errors}


def add(a: int, b: int) -> tuple[int, int]:
    return a, b


def everything(a: int, b: str = "dflt", *rest: int, c: float, d: bool = False,
               **extra: int) -> dict[str, Any]:
    return {"a": a, "b": b, "rest": rest, "c": c, "d": d, "extra": extra}


def pos_only(x: int, /, y: int = 0) -> tuple[int, int]:
    return x, y


def untyped(x, y=None):  # type: ignore[no-untyped-def]
    return x, y


def nested(xs: list[int], table: dict[str, list[float]] | None = None) -> Any:
    return xs, table


ADD = TaskType("add", add, "thread")
EVERYTHING = TaskType("everything", everything, "thread")


def test_positional_keyword_and_mixed() -> None:
    assert call(ADD, [1, 2]) == (1, 2)
    assert call(ADD, [], {"a": 1, "b": 2}) == (1, 2)
    assert call(ADD, [1], {"b": 2}) == (1, 2)
    assert call(ADD, [], {"b": 2, "a": 1}) == (1, 2)


def test_defaults_are_the_functions_own() -> None:
    assert call(EVERYTHING, [1], {"c": 2}) == {
        "a": 1, "b": "dflt", "rest": (), "c": 2.0, "d": False, "extra": {}}


def test_var_positional_and_var_keyword() -> None:
    got = call(EVERYTHING, [1, "x", 2, 3], {"c": 1.5, "d": True, "zz": 4, "yy": 5})
    assert got == {"a": 1, "b": "x", "rest": (2, 3), "c": 1.5, "d": True,
                   "extra": {"zz": 4, "yy": 5}}


def test_keyword_after_a_gap_in_positionals() -> None:
    got = call(EVERYTHING, [], {"a": 1, "c": 0, "d": True})
    assert got["a"] == 1
    assert got["b"] == "dflt"
    assert got["d"] is True


def test_values_are_coerced_to_the_annotation() -> None:
    got = call(EVERYTHING, [1], {"c": 2})
    assert isinstance(got["c"], float)


@pytest.mark.parametrize("value", ["5", True, 1.0, 2.5, None])
def test_json_values_are_not_loosely_converted(value: Any) -> None:
    # A string, a bool or a float for an int is the caller's mistake, not a 5 to guess at.
    assert set(errors_of(ADD, [value, 1])) == {"args.0"}


def on(day: datetime.date, pair: tuple[int, int]) -> tuple[datetime.date, tuple[int, int]]:
    return day, pair


def test_json_forms_of_richer_types_are_converted() -> None:
    got = call(TaskType("on", on, "thread"), ["2026-11-25", [1, 2]])
    assert got == (datetime.date(2026, 11, 25), (1, 2))


def test_positional_only_cannot_be_given_by_keyword() -> None:
    task_type = TaskType("p", pos_only, "thread")
    assert call(task_type, [1], {"y": 2}) == (1, 2)
    assert errors_of(task_type, [], {"x": 1}) == {
        "args.0": "Field required", "kwargs.x": "unexpected keyword argument"}


def test_missing_argument_is_named_the_way_the_caller_passed_the_others() -> None:
    assert errors_of(ADD, [1]) == {"args.1": "Field required"}  # all by position
    assert errors_of(ADD, [], {"a": 1}) == {"kwargs.b": "Field required"}  # by keyword
    assert errors_of(ADD, [1], {"c": 2}) == {  # mixed: a keyword names it
        "kwargs.b": "Field required", "kwargs.c": "unexpected keyword argument"}
    assert set(errors_of(ADD, [])) == {"kwargs.a", "kwargs.b"}  # nothing: by name


def test_extra_positional_arguments_are_named_by_index() -> None:
    fields = errors_of(ADD, [1, 2, 3, 4])
    assert set(fields) == {"args.2", "args.3"}
    assert "takes 2" in fields["args.2"]


def test_extra_keyword_argument_is_named() -> None:
    assert set(errors_of(ADD, [1, 2], {"c": 3})) == {"kwargs.c"}


def test_long_unknown_keyword_is_clipped() -> None:
    (field,) = errors_of(ADD, [1, 2], {"k" * 500: 1})
    assert len(field) < 100


def test_wrong_type_is_named_where_it_was_given() -> None:
    assert set(errors_of(ADD, [1, "two"])) == {"args.1"}
    assert set(errors_of(ADD, [1], {"b": "two"})) == {"kwargs.b"}
    assert set(errors_of(ADD, ["one", "two"])) == {"args.0", "args.1"}
    assert "integer" in errors_of(ADD, [1.5, 2])["args.0"]


def test_given_twice_is_an_error() -> None:
    assert set(errors_of(ADD, [1, 2], {"a": 1})) == {"kwargs.a"}


def test_bad_var_positional_item_is_named_by_its_position_in_args() -> None:
    # a, b take args.0 and args.1; *rest starts at args.2, so its second item is args.3
    assert set(errors_of(EVERYTHING, [1, "x", 2, "three"], {"c": 1})) == {"args.3"}


def test_bad_var_keyword_value_is_named_by_its_key() -> None:
    assert set(errors_of(EVERYTHING, [1], {"c": 1, "zz": "many"})) == {"kwargs.zz"}


def test_nested_errors_carry_the_path() -> None:
    task_type = TaskType("n", nested, "thread")
    assert set(errors_of(task_type, [[1, "x"]])) == {"args.0.1"}
    assert set(errors_of(task_type, [[1]], {"table": {"k": [1.0, "y"]}})) == {
        "kwargs.table.k.1"}
    assert call(task_type, [[1, 2]], {"table": {"k": [1]}}) == ([1, 2], {"k": [1.0]})


def test_several_errors_at_once() -> None:
    assert set(errors_of(EVERYTHING, ["x"], {"c": "y", "bogus": 1, "zz": "z"})) == {
        "args.0", "kwargs.c", "kwargs.zz"}


def test_unannotated_parameters_take_any_json() -> None:
    task_type = TaskType("u", untyped, "thread")
    assert call(task_type, [{"any": [1, None]}]) == ({"any": [1, None]}, None)
    assert set(errors_of(task_type, [])) == {"kwargs.x"}


def test_unresolvable_annotations_fall_back_to_any() -> None:
    def weird(x: NoSuchType) -> None:  # type: ignore[name-defined]  # noqa: F821
        return None

    assert call(TaskType("w", weird, "thread"), ["whatever"]) is None


def test_parameters_schema() -> None:
    schema = EVERYTHING.parameters_schema()
    assert schema["title"] == "everything"
    assert schema["type"] == "object"
    assert set(schema["required"]) == {"a", "c"}
    props = schema["properties"]
    assert props["a"]["type"] == "integer"
    assert props["b"] == {"title": "B", "type": "string", "default": "dflt"}
    assert props["c"]["type"] == "number"
    assert props["d"]["default"] is False
    assert props["rest"]["type"] == "array"
    assert props["rest"]["items"]["type"] == "integer"
    assert props["extra"]["type"] == "object"
    assert props["extra"]["additionalProperties"]["type"] == "integer"


def test_schema_leaves_out_defaults_that_are_not_json() -> None:
    def odd(x: float = float("inf"), y: Any = object, z: int | None = None) -> None:
        return None

    props = TaskType("odd", odd, "thread").parameters_schema()["properties"]
    assert "default" not in props["x"]
    assert "default" not in props["y"]
    assert props["z"]["default"] is None


def test_describe() -> None:
    async def documented(n: int) -> int:
        """Does n things."""
        return n

    task_type = TaskType("documented", documented, "async", timeout=5, retries=2,
                         idempotent=True)
    described = task_type.describe()
    assert described["name"] == "documented"
    assert described["description"] == "Does n things."
    assert described["executor"] == "async"
    assert described["timeout"] == 5
    assert described["retries"] == 2
    assert described["idempotent"] is True
    assert described["parameters"]["required"] == ["n"]
    assert task_type.max_attempts == 3


@pytest.mark.parametrize("options", [
    {"executor": "async"}, {"executor": "celery"}, {"executor": "thread", "timeout": 0},
    {"executor": "thread", "timeout": -1}, {"executor": "thread", "retries": -1},
    {"executor": "thread", "concurrency": 0}, {"executor": "thread", "retry_backoff": -1},
])
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"executor|timeout|retries|concurrency|backoff"):
        TaskType("add", add, **options)


def test_async_function_must_use_the_async_executor() -> None:
    async def run() -> None:
        return None

    for executor in ("thread", "process"):
        with pytest.raises(ValueError, match="async def"):
            TaskType("run", run, executor)  # type: ignore[arg-type]
    assert default_executor(run) == "async"
    assert default_executor(add) == "thread"


def test_process_task_must_be_importable_by_a_worker() -> None:
    def local(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="module-level"):
        TaskType("local", local, "process")
    TaskType("local", local, "thread")  # threads run it in this process: fine


def test_registry() -> None:
    registry = Registry()
    registry.add(EVERYTHING)
    registry.add(ADD)
    registry.add(TaskType("add", add, "process"))  # same function again: fine
    assert [t.name for t in registry] == ["add", "everything"]
    assert "add" in registry
    assert "nope" not in registry
    assert len(registry) == 2
    with pytest.raises(ValueError, match="already registered"):
        registry.add(TaskType("add", pos_only, "thread"))
    with pytest.raises(UnknownTaskType) as caught:
        registry.get("n" * 1000)
    assert caught.value.errors[0].field == "name"
    assert len(str(caught.value)) < 200
    assert isinstance(caught.value, InvalidSubmission)


@pytest.mark.parametrize("value", [10**400, "1e400"])
def test_a_number_too_big_for_a_float_is_refused_not_infinity(value: Any) -> None:
    def wait(seconds: float) -> float:
        return seconds

    assert set(errors_of(TaskType("wait", wait, "thread"), [value])) == {"args.0"}
