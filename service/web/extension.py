"""The Quart extension: a thin layer that serves a :class:`TaskService` over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, overload

from quart import Quart, Response, g
from quart.typing import ResponseTypes
from quart_schema import QuartSchema
from quart_schema.openapi import OpenAPIProvider
from typing_extensions import Unpack

from .. import jsonutil
from ..core import TaskService
from ..errors import StoreUnavailable
from ..handles import Decorator, TaskFunction, TaskOptions
from ..handles import task as declare_task
from ..settings import Settings
from ..stores import TaskStore
from ..workers import claim_single_worker, report_refusal
from .api import api
from .auth import TokenAuth
from .headers import optional_header
from .openapi import OffloadOpenAPIProvider
from .ops import public
from .request_ids import install as install_request_ids

log = logging.getLogger("offload")
STORE_RETRY = 2.0  # seconds between attempts to open a task store that could not be used
MakeResponse = Callable[[Any], Awaitable[ResponseTypes]]

for _blueprint in (api, public):
    install_request_ids(_blueprint)


class Offload:
    """Background tasks for a Quart app::

        app = Quart(__name__)
        offload = Offload(app)          # or Offload(); offload.init_app(app)

        @offload.task(timeout=30, retries=2)
        async def long_task(n: int) -> str: ...

    Settings come from the ``settings`` argument, else from ``OFFLOAD_*`` keys of
    ``app.config``, else from ``OFFLOAD_*`` environment variables.
    """

    def __init__(self, app: Quart | None = None, *, settings: Settings | None = None,
                 store: TaskStore | None = None, url_prefix: str = "",
                 openapi: bool = True) -> None:
        self._settings = settings
        self._store = store
        self.url_prefix = url_prefix.rstrip("/")
        self._openapi = openapi
        self._declared: list[TaskFunction] = []
        self._service: TaskService | None = None
        self._retrying: asyncio.Task[None] | None = None
        self.unavailable: str | None = None
        """Why the task store cannot be used, while it cannot (shown by ``/readyz``)."""
        self.auth = TokenAuth(())
        if app is not None:
            self.init_app(app)

    @property
    def service(self) -> TaskService:
        """The framework-free task service behind the extension."""
        if self._service is None:
            raise RuntimeError("Offload.init_app(app) has not been called")
        return self._service

    def init_app(self, app: Quart) -> None:
        settings = self._settings or Settings.load(app.config)
        self._service = TaskService(settings, self._store)
        self.auth = TokenAuth(settings.api_tokens)
        for module in settings.task_modules:
            self._service.register_module(module)
        for declared in self._declared:
            self._service.register(declared)
        app.extensions["offload"] = self
        if self._openapi:
            _document(app)
        _use_strict_json(app)
        app.register_blueprint(api, url_prefix=self.url_prefix or None)
        app.register_blueprint(public, url_prefix=self.url_prefix or None)
        app.before_serving(self._start)
        app.after_serving(self._stop)

    @overload
    def task(self, fn: Callable[..., Any], /) -> TaskFunction: ...
    @overload
    def task(self, fn: None = None, /, **options: Unpack[TaskOptions]) -> Decorator: ...
    def task(self, fn: Callable[..., Any] | None = None, /,
             **options: Unpack[TaskOptions]) -> TaskFunction | Decorator:
        """Register a task type; see :func:`service.task` for the options."""
        def register(function: Callable[..., Any]) -> TaskFunction:
            declared = declare_task(**options)(function)
            if self._service is None:
                self._declared.append(declared)
                return declared
            return self.service.register(declared)
        return register(fn) if fn is not None else register

    def current_owner(self) -> str | None:
        """For your own routes: check the bearer token (401) and return the caller's owner
        id, to pass as ``owner=`` to the service. None when tokens are not configured."""
        if "offload_owner" not in g:
            g.offload_owner = self.auth.owner(optional_header("Authorization"))
        owner: str | None = g.offload_owner
        return owner

    async def _start(self) -> None:
        try:
            if not self.service.store.shared:
                claim_single_worker(self.service.settings.store)
            await self.service.start()
        except StoreUnavailable as exc:
            # Not a silent fallback and not a dead server: /readyz says 503 with the reason,
            # and the service starts as soon as the store can be used.
            log.error("offload cannot use its task store (retrying every %gs): %s",
                      STORE_RETRY, exc)
            self.unavailable = str(exc)
            self._retrying = asyncio.create_task(self._start_when_store_is_back())
        except BaseException as exc:
            report_refusal(exc)
            raise

    async def _start_when_store_is_back(self) -> None:
        while True:
            await asyncio.sleep(STORE_RETRY)
            try:
                await self.service.start()
            except StoreUnavailable as exc:
                self.unavailable = str(exc)
                continue
            log.info("offload's task store is back: the service has started")
            self.unavailable = None
            return

    async def _stop(self) -> None:
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying
        await self.service.stop()


def _document(app: Quart) -> None:
    """Serve /openapi.json and /docs, or refine the host app's document if it has one
    (unless it brought its own provider)."""
    existing: QuartSchema | None = app.extensions.get("QUART_SCHEMA")
    if existing is None:
        plain = app.make_response
        QuartSchema(app, info={"title": "Offload", "version": "0.1.0"},
                    openapi_provider_class=OffloadOpenAPIProvider)
        _skip_conversion_of_responses(app, plain)
    elif type(existing.openapi_provider) is OpenAPIProvider:
        existing.openapi_provider = OffloadOpenAPIProvider(app, existing)


def _skip_conversion_of_responses(app: Quart, plain: MakeResponse) -> None:
    """A view's ready :class:`Response` goes straight to Quart's ``make_response``.

    quart-schema wraps ``make_response`` to turn returned models into JSON; for a Response
    (what every Offload view returns) its conversion gives back the same object, after
    some ten config and type look-ups on each request. Anything else still goes through it.
    """
    converting = app.make_response

    async def make_response(result: Any) -> ResponseTypes:
        if isinstance(result, Response):
            return await plain(result)
        return await converting(result)

    app.make_response = make_response  # type: ignore[method-assign]


def _use_strict_json(app: Quart) -> None:
    """Parse request JSON strictly: NaN, bad UTF-8 and absurd nesting are a 400, not a 500."""
    base = type(app.json)

    class StrictJSONProvider(base):  # type: ignore[valid-type,misc]
        def loads(self, s: str | bytes, **kwargs: Any) -> Any:
            return jsonutil.loads(s)

    app.json = StrictJSONProvider(app)
