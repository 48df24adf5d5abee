"""Task types: a function plus how to run it, and the validation of its arguments."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired

import pydantic
from typing_extensions import TypedDict

from . import jsonutil
from .builtin_tasks import GROUP_JOIN, group_join
from .errors import FieldError, InvalidSubmission, UnknownTaskType
from .models import JSON
from .rate_limits import RateLimit, task_rate_limit

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
    rate_limit: RateLimit | None = None
    idempotent: bool = False
    description: str = ""
    internal: bool = False
    """Offload's own (``offload.group``): never listed, and only a workflow submits one."""
    _params: list[inspect.Parameter] = field(default_factory=list, repr=False)
    _shape: _Shape | None = field(default=None, repr=False)
    _adapter: pydantic.TypeAdapter[Any] | None = field(default=None, repr=False)
    _schema: dict[str, JSON] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _check_options(self)
        self._params = list(inspect.signature(self.fn).parameters.values())
        self._shape = _Shape.of(self._params)
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
        shape = self._shape
        assert shape is not None
        assert self._adapter is not None
        named, errors = _assign(shape, args, kwargs)
        try:
            values = self._adapter.validate_json(jsonutil.dumps(named), strict=True)
        except pydantic.ValidationError as exc:
            origin = _origins(shape, args, kwargs)
            errors += _field_errors(exc, origin, len(shape.positional))
        if errors:
            raise InvalidSubmission(errors)
        call_args, call_kwargs = _call_shape(shape, values)
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
            "rate_limit": None if self.rate_limit is None else self.rate_limit.text,
            "rate": None if self.rate_limit is None else self.rate_limit.describe(),
        }


class Registry:
    """Task types by name. Every registry holds Offload's internal types too (so any
    process can run a workflow's join); iterating, ``in`` and ``len`` see only the others."""

    def __init__(self) -> None:
        self._types: dict[str, TaskType] = {}
        self._limits: dict[str, int] = {}
        self._rates: dict[str, RateLimit] = {}
        self._rate_overrides: dict[str, RateLimit | None] = {}
        self._by_executor: dict[Executor, tuple[str, ...]] = {e: () for e in EXECUTORS}
        # idempotent: it only returns its argument, so running it again after a crash is safe
        self.add(TaskType(GROUP_JOIN, group_join, "async", idempotent=True, internal=True))

    def add(self, task_type: TaskType) -> None:
        existing = self._types.get(task_type.name)
        if existing is not None and existing.fn is not task_type.fn:
            raise ValueError(f"a different task is already registered as {task_type.name!r}")
        if task_type.name in self._rate_overrides:  # a copy: the declared type is shared
            task_type = dataclasses.replace(
                task_type, rate_limit=self._rate_overrides[task_type.name])
        self._types[task_type.name] = task_type
        self._limits = {t.name: t.concurrency for t in self._types.values()
                        if t.concurrency is not None}
        self._rates = {t.name: t.rate_limit for t in self._types.values()
                       if t.rate_limit is not None}
        self._by_executor = {e: tuple(t.name for t in self._types.values() if t.executor == e)
                             for e in EXECUTORS}

    def concurrency_limits(self) -> dict[str, int]:
        """The ``concurrency`` of every type that has one (read, never change)."""
        return self._limits

    def override_rate_limits(self, overrides: Mapping[str, RateLimit | None]) -> None:
        """Replace the declared rate limits of these types (None: no limit), as
        ``OFFLOAD_RATE_LIMITS`` says; a name that is no registered type is an error."""
        unknown = sorted(set(overrides) - {t.name for t in self})
        if unknown:
            raise ValueError(f"OFFLOAD_RATE_LIMITS: no task type is registered as "
                             f"{', '.join(map(repr, unknown))}")
        self._rate_overrides = dict(overrides)
        for task_type in list(self._types.values()):
            self.add(task_type)

    def rate_limits(self) -> dict[str, RateLimit]:
        """The ``rate_limit`` of every type that has one (read, never change)."""
        return self._rates

    def names_run_by(self, executor: Executor) -> tuple[str, ...]:
        return self._by_executor[executor]

    def is_idempotent(self, name: str) -> bool:
        task_type = self._types.get(name)
        return task_type is not None and task_type.idempotent

    def get(self, name: str) -> TaskType:
        """The type named so, internal ones too (what runs a record)."""
        try:
            return self._types[name]
        except KeyError:
            raise UnknownTaskType(name) from None

    def submittable(self, name: str, internal: bool = False) -> TaskType:
        """The type a submission names. An internal one is unknown (as over HTTP) unless
        ``internal``: the submission is a workflow's own step."""
        task_type = self.get(name)
        if task_type.internal and not internal:
            raise UnknownTaskType(name)
        return task_type

    def every_type(self) -> list[TaskType]:
        """Every type, internal ones too (what a worker must be able to run)."""
        return sorted(self._types.values(), key=lambda t: t.name)

    def __contains__(self, name: object) -> bool:
        found = self._types.get(name) if isinstance(name, str) else None
        return found is not None and not found.internal

    def __iter__(self) -> Iterator[TaskType]:
        return iter([t for t in self.every_type() if not t.internal])

    def __len__(self) -> int:
        return sum(1 for t in self._types.values() if not t.internal)


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
    if task_type.rate_limit is not None and not isinstance(task_type.rate_limit, RateLimit):
        # given as declared ("10/m"): parsed here, so a bad one names its task
        task_type.rate_limit = task_rate_limit(task_type.name, task_type.rate_limit)


def _check_executor(task_type: TaskType) -> None:
    if task_type.executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, not {task_type.executor!r}")
    is_async = inspect.iscoroutinefunction(task_type.fn)
    if is_async != (task_type.executor == "async"):
        kind = "an async def" if is_async else "a plain def"
        raise ValueError(f"task {task_type.name!r} is {kind}: executor {task_type.executor!r} "
                         "does not fit (async def runs on the loop, def in a thread or process)")
    if task_type.executor == "process":
        _check_importable(task_type)


def _check_importable(task_type: TaskType) -> None:
    """A worker process imports a process task by its module and name: a function defined
    in ``__main__`` (a script run directly) or inside another one cannot be found there."""
    if "<" in task_type.fn.__qualname__:
        raise ValueError(f"process task {task_type.name!r} must be a module-level function: "
                         "a worker process imports it by its module and name")
    if getattr(task_type.fn, "__module__", None) == "__main__":
        raise ValueError(
            f"process task {task_type.name!r} is defined in __main__ (the script being run), "
            "which a worker process cannot import: move it into a module (tasks.py, say) "
            "and import it from there")


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


@dataclass(frozen=True, slots=True)
class _Shape:
    """A signature as plain names, read once: ``inspect.Parameter.kind`` is a property,
    and binding runs on every submit."""

    positional: tuple[str, ...]  # positional-only and positional-or-keyword, in order
    positional_only: frozenset[str]
    keywords: frozenset[str]  # positional-or-keyword and keyword-only
    var_args: str | None
    var_kwargs: str | None
    order: tuple[tuple[str, inspect._ParameterKind], ...]

    @classmethod
    def of(cls, params: list[inspect.Parameter]) -> _Shape:
        kinds = inspect.Parameter
        positional = tuple(p.name for p in params
                           if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD))
        return cls(
            positional=positional,
            positional_only=frozenset(p.name for p in params
                                      if p.kind is kinds.POSITIONAL_ONLY),
            keywords=frozenset(p.name for p in params
                               if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)),
            var_args=next((p.name for p in params if p.kind is kinds.VAR_POSITIONAL), None),
            var_kwargs=next((p.name for p in params if p.kind is kinds.VAR_KEYWORD), None),
            order=tuple((p.name, p.kind) for p in params))


def _assign(
    shape: _Shape, args: list[JSON], kwargs: dict[str, JSON]
) -> tuple[dict[str, JSON], list[FieldError]]:
    """Map submitted values to parameter names."""
    named: dict[str, JSON] = dict(zip(shape.positional, args, strict=False))
    errors: list[FieldError] = []
    taken = len(shape.positional)
    if len(args) > taken and shape.var_args is None:
        errors += [FieldError(f"args.{i}", f"unexpected positional argument (takes {taken})")
                   for i in range(taken, len(args))]
    elif len(args) > taken and shape.var_args is not None:
        named[shape.var_args] = args[taken:]
    if kwargs:
        errors += _assign_keywords(shape, kwargs, named)
    return named, errors


def _assign_keywords(shape: _Shape, kwargs: dict[str, JSON], named: dict[str, JSON]
                     ) -> list[FieldError]:
    errors: list[FieldError] = []
    extra: dict[str, JSON] = {}
    for key, value in kwargs.items():
        if key in named and key in shape.keywords:
            errors.append(FieldError(f"kwargs.{key}", "given both by position and by keyword"))
        elif key in shape.keywords:
            named[key] = value
        elif shape.var_kwargs is not None:
            extra[key] = value
        else:
            errors.append(FieldError(f"kwargs.{_clip(key)}", "unexpected keyword argument"))
    if extra and shape.var_kwargs is not None:
        named[shape.var_kwargs] = extra
    return errors


def _origins(shape: _Shape, args: list[JSON], kwargs: dict[str, JSON]) -> dict[str, str]:
    """Where each parameter's value came from (``args.0``, ``kwargs.b``), to name the
    submitted field in a validation error. Made only when there is an error."""
    origin: dict[str, str] = {}
    by_position_only = bool(args) and not kwargs  # a missing one is named the same way
    for index, name in enumerate(shape.positional):
        if index < len(args) or name in shape.positional_only or by_position_only:
            origin[name] = f"args.{index}"
    if shape.var_args is not None and len(args) > len(shape.positional):
        origin[shape.var_args] = "args"
    by_position = set(shape.positional[:len(args)])
    for key in kwargs:
        if key in shape.keywords and key not in by_position:
            origin[key] = f"kwargs.{key}"
        elif key not in shape.keywords and shape.var_kwargs is not None:
            origin[shape.var_kwargs] = "kwargs"
    return origin


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


def _call_shape(shape: _Shape, values: dict[str, Any]
                ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    in_order = True  # positional slots are filled left to right until the first gap
    for name, kind in shape.order:
        present = name in values
        if kind is _POSITIONAL_ONLY or kind is _POSITIONAL_OR_KEYWORD:
            in_order = in_order and present
            if in_order:
                args.append(values[name])
            elif present:
                kwargs[name] = values[name]
        elif kind is _VAR_POSITIONAL and present:
            args.extend(values[name])
        elif kind is _VAR_KEYWORD and present:
            kwargs.update(values[name])
        elif present:
            kwargs[name] = values[name]
    return tuple(args), kwargs


_POSITIONAL_ONLY = inspect.Parameter.POSITIONAL_ONLY
_POSITIONAL_OR_KEYWORD = inspect.Parameter.POSITIONAL_OR_KEYWORD
_VAR_POSITIONAL = inspect.Parameter.VAR_POSITIONAL
_VAR_KEYWORD = inspect.Parameter.VAR_KEYWORD


def _is_json_default(value: Any) -> bool:
    if value is inspect.Parameter.empty:
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, bool | int | str)


def _clip(key: str, limit: int = 64) -> str:
    return key if len(key) <= limit else key[:limit] + "…"
