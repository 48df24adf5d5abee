"""Task types: a function plus how to run it, and the validation of its arguments."""

from __future__ import annotations

import copy
import inspect
import math
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired

import pydantic
from typing_extensions import TypedDict

from . import jsonutil
from .errors import FieldError, InvalidSubmission, UnknownTaskType
from .models import JSON

Executor = Literal["async", "thread", "process"]
EXECUTORS: tuple[Executor, ...] = ("async", "thread", "process")


@dataclass(frozen=True, slots=True)
class BoundCall:
    """Validated arguments, ready to call the task's function with (coerced: a date
    parameter holds a date; the JSON they came from stays in the task's record)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


NO_ARGUMENTS = BoundCall((), {})


@dataclass(slots=True)
class TaskType:
    """A registered task: the function and the rules for running it."""

    name: str
    fn: Callable[..., Any]
    executor: Executor
    timeout: float | None = None
    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    retry_backoff: float | None = None
    concurrency: int | None = None
    idempotent: bool = False
    description: str = ""
    _params: list[inspect.Parameter] = field(default_factory=list, repr=False)
    _adapter: pydantic.TypeAdapter[Any] | None = field(default=None, repr=False)
    _schema: dict[str, JSON] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _check_options(self)
        self._params = list(inspect.signature(self.fn).parameters.values())
        self._adapter = pydantic.TypeAdapter(_arguments_typeddict(self.fn, self._params))
        if not self.description:
            self.description = inspect.getdoc(self.fn) or ""

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def bind(self, args: list[JSON], kwargs: dict[str, JSON]) -> BoundCall:
        """Check ``args``/``kwargs`` against the signature and type hints; coerce them.

        Raises :class:`InvalidSubmission` naming each bad field (``args.1``, ``kwargs.b``).
        """
        if not (self._params or args or kwargs):  # nothing to check, nothing to coerce
            return NO_ARGUMENTS
        named, origin, errors = _assign(self._params, args, kwargs)
        assert self._adapter is not None
        try:
            values = self._adapter.validate_json(jsonutil.dumps(named), strict=True)
        except pydantic.ValidationError as exc:
            errors += _field_errors(exc, origin, _positional_count(self._params))
        if errors:
            raise InvalidSubmission(errors)
        call_args, call_kwargs = _call_shape(self._params, values)
        return BoundCall(call_args, call_kwargs)

    def parameters_schema(self) -> dict[str, JSON]:
        """JSON Schema of the keyword form of the arguments (made once, then a copy)."""
        if self._schema is None:
            self._schema = self._make_schema()
        return copy.deepcopy(self._schema)

    def _make_schema(self) -> dict[str, JSON]:
        assert self._adapter is not None
        schema: dict[str, JSON] = self._adapter.json_schema()
        schema["title"] = self.name
        properties = schema.get("properties", {})
        for param in self._params:
            if param.name in properties and _is_json_default(param.default):
                properties[param.name]["default"] = param.default
        return schema

    def describe(self) -> dict[str, JSON]:
        """The entry of ``GET /task-types``."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters_schema(),
            "executor": self.executor,
            "timeout": self.timeout,
            "retries": self.retries,
            "idempotent": self.idempotent,
            "concurrency": self.concurrency,
        }


class Registry:
    """Task types by name."""

    def __init__(self) -> None:
        self._types: dict[str, TaskType] = {}

    def add(self, task_type: TaskType) -> None:
        existing = self._types.get(task_type.name)
        if existing is not None and existing.fn is not task_type.fn:
            raise ValueError(f"a different task is already registered as {task_type.name!r}")
        self._types[task_type.name] = task_type

    def get(self, name: str) -> TaskType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownTaskType(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[TaskType]:
        return iter(sorted(self._types.values(), key=lambda t: t.name))

    def __len__(self) -> int:
        return len(self._types)


def default_executor(fn: Callable[..., Any]) -> Executor:
    """``async def`` runs on the loop; anything else in a thread, never on the loop."""
    return "async" if inspect.iscoroutinefunction(fn) else "thread"


def _check_options(task_type: TaskType) -> None:
    _check_executor(task_type)
    if task_type.timeout is not None and not task_type.timeout > 0:
        raise ValueError("timeout must be a positive number of seconds")
    if task_type.retry_backoff is not None and task_type.retry_backoff < 0:
        raise ValueError("retry_backoff must not be negative")
    if task_type.retries < 0:
        raise ValueError("retries must not be negative")
    if task_type.concurrency is not None and task_type.concurrency < 1:
        raise ValueError("concurrency must be at least 1")


def _check_executor(task_type: TaskType) -> None:
    if task_type.executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, not {task_type.executor!r}")
    is_async = inspect.iscoroutinefunction(task_type.fn)
    if is_async != (task_type.executor == "async"):
        kind = "an async def" if is_async else "a plain def"
        raise ValueError(f"task {task_type.name!r} is {kind}: executor {task_type.executor!r} "
                         "does not fit (async def runs on the loop, def in a thread or process)")
    if task_type.executor == "process" and "<" in task_type.fn.__qualname__:
        raise ValueError(f"process task {task_type.name!r} must be a module-level function: "
                         "a worker process imports it by its module and name")


def _arguments_typeddict(fn: Callable[..., Any], params: list[inspect.Parameter]) -> Any:
    try:
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError):
        hints = {}
    fields_: dict[str, Any] = {}
    for param in params:
        hint = hints.get(param.name, Any)
        if param.kind is param.VAR_POSITIONAL:
            hint = NotRequired[list[hint]]  # type: ignore[valid-type]
        elif param.kind is param.VAR_KEYWORD:
            hint = NotRequired[dict[str, hint]]  # type: ignore[valid-type]
        elif param.default is not param.empty:
            hint = NotRequired[hint]
        fields_[param.name] = hint
    name = f"{getattr(fn, '__name__', 'task')}_arguments"
    arguments = TypedDict(name, fields_)  # type: ignore[misc]
    # 1e400, or an integer too large for a float parameter, would be bound as inf
    return pydantic.with_config(pydantic.ConfigDict(allow_inf_nan=False))(arguments)


def _assign(
    params: list[inspect.Parameter], args: list[JSON], kwargs: dict[str, JSON]
) -> tuple[dict[str, JSON], dict[str, str], list[FieldError]]:
    """Map submitted values to parameter names, remembering where each came from."""
    named: dict[str, JSON] = {}
    origin: dict[str, str] = {}
    errors: list[FieldError] = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    var_args = next((p for p in params if p.kind is p.VAR_POSITIONAL), None)
    var_kwargs = next((p for p in params if p.kind is p.VAR_KEYWORD), None)
    for index, param in enumerate(positional):
        if index < len(args):
            named[param.name] = args[index]
        if index < len(args) or param.kind is param.POSITIONAL_ONLY:  # never kwargs.<name>
            origin[param.name] = f"args.{index}"
    extra = args[len(positional):]
    if extra and var_args is None:
        errors += [FieldError(f"args.{len(positional) + i}",
                              f"unexpected positional argument (takes {len(positional)})")
                   for i in range(len(extra))]
    elif extra and var_args is not None:
        named[var_args.name] = list(extra)
        origin[var_args.name] = "args"
    errors += _assign_keywords(params, kwargs, named, origin, var_kwargs)
    return named, origin, errors


def _assign_keywords(
    params: list[inspect.Parameter],
    kwargs: dict[str, JSON],
    named: dict[str, JSON],
    origin: dict[str, str],
    var_kwargs: inspect.Parameter | None,
) -> list[FieldError]:
    by_name = {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    errors: list[FieldError] = []
    extra: dict[str, JSON] = {}
    for key, value in kwargs.items():
        if key in named and key in by_name:
            errors.append(FieldError(f"kwargs.{key}", "given both by position and by keyword"))
        elif key in by_name:
            named[key] = value
            origin[key] = f"kwargs.{key}"
        elif var_kwargs is not None:
            extra[key] = value
        else:
            errors.append(FieldError(f"kwargs.{_clip(key)}", "unexpected keyword argument"))
    if extra and var_kwargs is not None:
        named[var_kwargs.name] = extra
        origin[var_kwargs.name] = "kwargs"
    return errors


def _field_errors(
    exc: pydantic.ValidationError, origin: dict[str, str], offset: int
) -> list[FieldError]:
    """Pydantic's locations as submitted fields; ``offset`` turns an index into ``*args``
    into the position in ``args`` (``def f(a, *rest)``: ``rest[1]`` is ``args.2``)."""
    errors = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        head = origin.get(loc[0], f"kwargs.{loc[0]}") if loc else "kwargs"
        if head == "args" and len(loc) > 1:
            loc[1] = str(int(loc[1]) + offset)
        errors.append(FieldError(".".join([head, *loc[1:]]), error["msg"]))
    return errors


def _positional_count(params: list[inspect.Parameter]) -> int:
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _call_shape(
    params: list[inspect.Parameter], values: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    in_order = True  # positional slots are filled left to right until the first gap
    for param in params:
        present = param.name in values
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            in_order = in_order and present
            if in_order:
                args.append(values[param.name])
            elif present:
                kwargs[param.name] = values[param.name]
        elif param.kind is param.VAR_POSITIONAL and present:
            args.extend(values[param.name])
        elif param.kind is param.VAR_KEYWORD and present:
            kwargs.update(values[param.name])
        elif present:
            kwargs[param.name] = values[param.name]
    return tuple(args), kwargs


def _is_json_default(value: Any) -> bool:
    if value is inspect.Parameter.empty:
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, bool | int | str)


def _clip(key: str, limit: int = 64) -> str:
    return key if len(key) <= limit else key[:limit] + "…"
