"""Settings: every limit in one place, read from Quart config or ``OFFLOAD_*`` variables."""

from __future__ import annotations

import difflib
import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .rate_limits import RateOverrides, parse_rate_overrides
from .schedules import Schedule, parse_schedules

DEMO_MODULE = "service.demo"
MIN_LAG_THRESHOLD = 0.01
PREFIX = "OFFLOAD_"
log = logging.getLogger("offload.settings")


def _cpu_count() -> int:
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob Offload has, with a sane default. Environment names are ``OFFLOAD_<NAME>``."""

    task_modules: tuple[str, ...] = ()
    store: str = "memory://"
    celery_broker: str = ""
    """A Celery broker URL (``redis://…`` or ``amqp://…``): set, this process runs no task
    itself; Celery workers (``celery -A service.celery_app worker``) run them, with the
    records in ``store`` (which must then be a Redis store). See docs/celery.md."""
    celery_resend: float = 60.0
    """Celery mode: seconds after which a startable task that no worker has claimed gets
    its message again (a broker may lose one), then twice as long as it has waited; a
    worker drops the extra ones."""
    celery_thread_grace: float = 5.0
    """Celery mode, prefork workers: seconds a ``def`` task has, once it is cancelled or
    past its timeout (``cancel_requested()`` is true: the soft limit), to return before
    its pool process is ended (the hard limit; Celery starts another)."""
    schedules: tuple[Schedule, ...] = ()
    """Periodic tasks: ``OFFLOAD_SCHEDULES``, a JSON list of ``{"name", "task", "cron" or
    "every", "timezone", "args", "kwargs", "missed", "overlap"}`` (see docs/schedules.md)."""
    rate_limits: RateOverrides = ()
    """Rate limits that replace the ones tasks declare: ``OFFLOAD_RATE_LIMITS``, a JSON
    object ``{"task name": "10/m"}`` (null: no limit; see docs/rate-limits.md)."""
    max_concurrency: int = 100
    max_body: int = 1_048_576
    max_result: int = 16 * 1_048_576
    max_queue: int = 10_000
    result_ttl: float = 3600.0
    max_records: int = 100_000
    api_tokens: tuple[str, ...] = ()
    shutdown_grace: float = 10.0
    thread_workers: int = 32
    process_workers: int = field(default_factory=_cpu_count)
    process_nice: int = 10
    process_idle_priority: bool = False
    """Opt-in: process workers under Linux's ``SCHED_IDLE`` (a CPU only when no normal
    process wants one). Requests stay faster while they compute; on a host kept busy by
    normal processes, process tasks starve. Ignored where the platform lacks it."""
    process_yield_timer: bool = False
    """Opt-in: a timer signal per millisecond of CPU time in each process worker, so that a
    waking request takes the CPU within a millisecond, not a clock tick. It claims the
    worker's ``SIGVTALRM`` and runs a handler about 1,000 times per CPU-second."""
    max_batch: int = 1000
    max_depends_on: int = 100
    """Ids one submission's ``depends_on`` may list (a chord's callback lists its whole
    group: ``OFFLOAD_MAX_GROUP`` bounds that one instead)."""
    max_group: int = 1000
    """Tasks in one group (or a chord's header) of the library's workflows."""
    max_chain: int = 100
    """Steps of a chain: tasks one after the other, in a library chain or along the
    ``depends_on`` of one batch (a chain across submissions is bounded by the queue)."""
    max_page: int = 1000
    max_wait: float = 60.0
    max_delay: float = 30 * 24 * 3600.0
    retry_backoff: float = 1.0
    retry_backoff_max: float = 300.0
    sse_keepalive: float = 15.0
    events_buffer: int = 1000
    """Recent events each process keeps for ``GET /events`` readers that reconnect with
    ``Last-Event-ID`` (0: no resuming)."""
    events_queue: int = 1000
    """Events held for one ``GET /events`` reader that does not keep up; past it the reader
    gets a ``reset`` event instead."""
    max_event_streams: int = 100
    """``GET /events`` streams open at once in one process; past it, 429."""
    events_max_bytes: int = 16 * 1024 * 1024
    """Bytes of task JSON the resume buffer holds at most, and one reader's queue: events
    carry whole tasks, so a count alone would not bound memory."""
    poll_after: int = 1
    expose_tracebacks: bool = False
    sweep_interval: float = 5.0
    lease: float = 10.0
    poll_interval: float = 0.025
    loop_lag_threshold: float = 0.1
    log_format: str = "text"
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if not all(isinstance(s, Schedule) for s in self.schedules) or not isinstance(
                self.schedules, tuple):  # given as JSON text or as plain objects
            object.__setattr__(self, "schedules", parse_schedules(self.schedules))
        object.__setattr__(self, "rate_limits", parse_rate_overrides(self.rate_limits))
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                _check_number(spec.name, value)
        if self.loop_lag_threshold and self.loop_lag_threshold < MIN_LAG_THRESHOLD:
            raise ValueError(f"OFFLOAD_LOOP_LAG_THRESHOLD: 0 (off) or at least "
                             f"{MIN_LAG_THRESHOLD}, not {self.loop_lag_threshold!r}")
        if not isinstance(logging.getLevelName(self.log_level.upper()), int):
            raise ValueError(f"OFFLOAD_LOG_LEVEL: not a logging level: {self.log_level!r}")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"OFFLOAD_LOG_FORMAT: 'text' or 'json', not {self.log_format!r}")

    @classmethod
    def load(
        cls, config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Build settings: Quart config keys win over environment variables, both optional."""
        config = config or {}
        environ = os.environ if environ is None else environ
        warn_unknown(config, "app config key")
        warn_unknown(environ, "environment variable")
        values: dict[str, Any] = {}
        for spec in fields(cls):
            key = f"{PREFIX}{spec.name.upper()}"
            raw = config.get(key, environ.get(key))
            if raw is None or raw == "":
                continue
            values[spec.name] = _convert(spec.name, raw, type(getattr(_DEFAULTS, spec.name)))
        return cls(**values)


def setting_names() -> list[str]:
    """Every setting's variable name, ``OFFLOAD_...``."""
    return [f"{PREFIX}{spec.name.upper()}" for spec in fields(Settings)]


# Read by the HTTP client and the ``offload`` command, not by the service: a shell that
# exports them for the client may also start the server.
CLIENT_NAMES = frozenset({"OFFLOAD_URL", "OFFLOAD_TOKEN"})


def unknown_names(names: Iterable[object]) -> dict[str, str | None]:
    """The ``OFFLOAD_*`` names among ``names`` that are no setting (nor the client's), each
    with the closest real setting's name (None when nothing is close)."""
    known = setting_names()
    found: dict[str, str | None] = {}
    for name in names:
        if (isinstance(name, str) and name.startswith(PREFIX) and name not in known
                and name not in CLIENT_NAMES):
            # compared without the prefix, which every name shares
            close = difflib.get_close_matches(name.removeprefix(PREFIX),
                                              [k.removeprefix(PREFIX) for k in known], 1, 0.7)
            found[name] = PREFIX + close[0] if close else None
    return found


def warn_unknown(source: Mapping[str, Any], what: str) -> None:
    """Log a warning, once per process, for each misspelled or unknown ``OFFLOAD_*`` name:
    a typo would otherwise leave its setting at the default without a word."""
    for name, closest in unknown_names(source).items():
        if (what, name) in _warned:
            continue
        _warned.add((what, name))
        hint = f"; did you mean {closest}?" if closest else ""
        log.warning("%s %s is not an Offload setting, so it is ignored%s", what, name, hint)


_warned: set[tuple[str, str]] = set()


def _convert(name: str, raw: Any, kind: type) -> Any:
    if name == "schedules":
        return parse_schedules(raw)
    if name == "rate_limits":
        return parse_rate_overrides(raw)
    if kind is tuple:
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        return tuple(item.strip() for item in items if item.strip())
    if kind is bool:
        return raw if isinstance(raw, bool) else _parse_bool(name, raw)
    try:
        return kind(raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"OFFLOAD_{name.upper()}: {raw!r} is not a valid {kind.__name__}") from exc


def _parse_bool(name: str, raw: Any) -> bool:
    text = str(raw).strip().lower()
    if text not in _TRUE | _FALSE:
        raise ValueError(f"OFFLOAD_{name.upper()}: {raw!r} is not a boolean (true or false)")
    return text in _TRUE


def _check_number(name: str, value: float) -> None:
    key = f"OFFLOAD_{name.upper()}"
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{key}: must be a finite number, not negative; got {value!r}")
    if name in _POSITIVE and value <= 0:
        raise ValueError(f"{key}: must be above 0, got {value!r}")


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_POSITIVE = frozenset({"max_concurrency", "max_body", "max_result", "max_queue", "thread_workers",
                       "process_workers", "max_batch", "max_page",
                       "max_depends_on", "max_group", "max_chain", "sweep_interval",
                       "sse_keepalive", "lease", "poll_interval", "events_queue",
                       "max_event_streams", "events_max_bytes", "celery_resend"})
_DEFAULTS = Settings()
