"""``throughput_router()``: the registry's status as a FastAPI router.

Every read is served from the registry's in-process state (no telemetry call
per request).  Handlers are ``async def`` on purpose: they run on the event
loop beside the monitor, never in a worker thread racing it.  The override
routes change policy, so they need a bearer token and do not exist, as far as
a client can tell (404), when none is configured.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, SecretStr

from admission.distributed import BackendUnavailable, FleetReader
from admission.policy import ConfigError, FailureKind, Observation, QueueSample, ReadFailure
from admission.registry import Registry, default_registry
from integrations.web_api.models import (
    ClassStatus,
    ErrorResponse,
    EvaluateRequest,
    FleetStatus,
    HypotheticalSample,
    OverrideRequest,
    OverrideStatus,
    PresetsResponse,
    QueueStatus,
    Status,
    TransitionsResponse,
    ValidationErrorResponse,
)

__all__ = ["DEFAULT_PREFIX", "throughput_router"]

#: Where Nemesis mounts the router: ``app.include_router(router, prefix=DEFAULT_PREFIX)``.
DEFAULT_PREFIX = "/workflows/throughput-policy"

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}}
_INVALID: dict[int | str, dict[str, Any]] = {422: {"model": ValidationErrorResponse}}
_BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body is not JSON."},
    **_INVALID,
}
_GUARDED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "No bearer token was sent."},
    403: {"model": ErrorResponse, "description": "The bearer token is wrong."},
    404: {
        "model": ErrorResponse,
        "description": "No API token is configured (override routes are off), or no such override.",
    },
}
_bearer = HTTPBearer(auto_error=False, description="The ADMISSION_API_TOKEN of the service.")


def throughput_router(
    registry: Registry | None = None,
    *,
    api_token: str | SecretStr | None = None,
    fleet: FleetReader | None = None,
) -> APIRouter:
    """The status, what-if, presets, transitions, overrides and metrics routes.

    ``registry=None`` serves the process-wide default registry (looked up per
    request, so ``set_default_registry`` takes effect).  Without ``api_token``
    the override routes answer 404: a default install cannot change policy
    over HTTP.  ``fleet`` (a ``FleetReader``) adds ``GET /fleet``: every
    replica's status as published to Redis.
    """
    token = api_token.get_secret_value() if isinstance(api_token, SecretStr) else api_token
    if token is not None and not token.strip():
        raise ValueError("api_token must not be empty (pass None to disable the override routes)")

    def current() -> Registry:
        return registry if registry is not None else default_registry()

    router = APIRouter(tags=["throughput-policy"])
    authorize = _authorizer(None if token is None else token.encode())
    # The routes' own class checks the token, first of all; the dependency only
    # documents the bearer scheme in the OpenAPI.
    overrides = APIRouter(route_class=_guarded_route(authorize))
    guarded = [Depends(_bearer)]

    @router.get("/status", response_model=Status, summary="The whole policy status")
    async def get_status() -> Response:
        return _json(current().status())

    @router.get(
        "/status/{queue}",
        response_model=QueueStatus,
        responses=_NOT_FOUND,
        summary="One watched queue",
    )
    async def get_queue(queue: Annotated[str, Path(min_length=1)]) -> Response:
        reg = current()
        try:
            return _json(reg.queue_status(queue))
        except KeyError:
            raise _not_found("queue", queue, reg.queues) from None

    @router.get(
        "/classes/{class_name}",
        response_model=ClassStatus,
        responses=_NOT_FOUND,
        summary="One workload class",
    )
    async def get_class(class_name: Annotated[str, Path(min_length=1)]) -> Response:
        reg = current()
        try:
            return _json(reg.class_status(class_name))
        except KeyError:
            raise _not_found("class", class_name, tuple(reg.state.classes)) from None

    @router.post(
        "/evaluate",
        response_model=Status,
        responses=_BODY,
        summary="What-if: the status these readings would bring (nothing live changes)",
    )
    async def evaluate(request: EvaluateRequest) -> Status:
        reg = current()
        now = reg.clock.monotonic()
        observations: dict[str, Observation] = {}
        for number, sample in enumerate(request.samples):
            if sample.queue not in reg.state.queues:
                raise _unprocessable(
                    f"samples[{number}].queue={sample.queue!r} is not a watched queue "
                    f"(watched: {', '.join(reg.queues) or 'none'})"
                )
            observations[sample.queue] = _observation(sample, now)
        try:
            return reg.evaluate(
                observations, preset=request.preset, hold_seconds=request.hold_seconds
            )
        except ConfigError as exc:
            raise _unprocessable(str(exc)) from None

    @router.get("/presets", response_model=PresetsResponse, summary="Every known preset")
    async def get_presets() -> PresetsResponse:
        reg = current()
        return PresetsResponse(
            requested_preset=reg.requested_preset,
            active_preset=reg.status().active_preset,
            presets=tuple(reg.config.presets[name] for name in sorted(reg.config.presets)),
        )

    @router.get(
        "/transitions",
        response_model=TransitionsResponse,
        responses=_INVALID,
        summary="The most recent transitions, oldest first",
    )
    async def get_transitions(
        limit: Annotated[int, Query(ge=0, le=10_000)] = 100,
    ) -> TransitionsResponse:
        return TransitionsResponse(transitions=current().transitions(limit))

    @overrides.post(
        "/overrides",
        response_model=OverrideStatus,
        status_code=status.HTTP_201_CREATED,
        responses={**_GUARDED, **_BODY},
        dependencies=guarded,
        summary="Pin a level or a preset on a queue or a class for a TTL",
    )
    async def post_override(request: OverrideRequest) -> OverrideStatus:
        try:
            return current().add_override(
                request.scope,
                request.name,
                ttl_seconds=request.ttl_seconds,
                level=request.level,
                preset=request.preset,
                reason=request.reason,
            )
        except ValueError as exc:  # ConfigError is one: unknown queue, class or preset
            raise _unprocessable(str(exc)) from None

    @overrides.delete(
        "/overrides/{override_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        response_class=Response,
        responses=_GUARDED,
        dependencies=guarded,
        summary="Lift an override before its TTL",
    )
    async def delete_override(
        override_id: Annotated[str, Path(min_length=1, max_length=100)],
    ) -> Response:
        try:
            current().remove_override(override_id)
        except KeyError:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"no override with id {override_id!r}"
            ) from None
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    router.include_router(overrides)
    _add_metrics(router, current)
    if fleet is not None:
        _add_fleet(router, fleet)
    return router


def _add_fleet(router: APIRouter, fleet: FleetReader) -> None:
    @router.get(
        "/fleet",
        response_model=FleetStatus,
        responses={503: {"model": ErrorResponse, "description": "Redis does not answer."}},
        summary="Every replica that published its status, and the fleet's totals",
    )
    async def get_fleet() -> FleetStatus:
        try:
            return await fleet.read()
        except BackendUnavailable as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, f"fleet status unavailable: {exc.reason}"
            ) from None


def _authorizer(
    token: bytes | None,
) -> Callable[[HTTPAuthorizationCredentials | None], Awaitable[None]]:
    async def authorize(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if token is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                "override routes are disabled: no API token is configured (ADMISSION_API_TOKEN)",
            )
        if credentials is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "a bearer token is required (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        # Constant time: a wrong token must not tell how much of it was right.
        if not hmac.compare_digest(credentials.credentials.encode(), token):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "the bearer token is not valid")

    return authorize


def _guarded_route(
    authorize: Callable[[HTTPAuthorizationCredentials | None], Awaitable[None]],
) -> type[APIRoute]:
    class GuardedRoute(APIRoute):
        """Checks the bearer token before anything else: a caller without the right
        token gets its 401/403, even for a body that is not JSON (which FastAPI
        would refuse before any dependency ran)."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                await authorize(await _bearer(request))
                return await handler(request)

            return guarded

    return GuardedRoute


def _add_metrics(router: APIRouter, current: Callable[[], Registry]) -> None:
    try:
        from admission.metrics import render_metrics
    except ImportError:  # the metrics extra is not installed: no route
        return
    from prometheus_client import CONTENT_TYPE_LATEST

    @router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
        summary="Prometheus metrics of the registry",
    )
    async def get_metrics() -> Response:
        return Response(render_metrics(current()), media_type=CONTENT_TYPE_LATEST)


def _observation(sample: HypotheticalSample, now: float) -> Observation:
    if sample.failure is not None:
        return ReadFailure(sample.queue, now, FailureKind.SOURCE_ERROR, sample.failure)
    assert sample.messages_ready is not None  # the model checked it
    return QueueSample(
        sample.queue,
        now,
        sample.messages_ready,
        messages_unacknowledged=sample.messages_unacknowledged,
        consumers=sample.consumers,
        publish_rate=sample.publish_rate,
        deliver_rate=sample.deliver_rate,
        ack_rate=sample.ack_rate,
        oldest_message_age_seconds=sample.oldest_message_age_seconds,
    )


def _json(model: BaseModel) -> Response:
    """The model as JSON, serialised once.

    The status routes are the ones polled hard; FastAPI would dump the model,
    validate it back against the response model and dump it again. The model is
    already the response model, built and validated by the registry.
    """
    return Response(content=model.model_dump_json(), media_type="application/json")


def _not_found(kind: str, name: str, known: tuple[str, ...]) -> HTTPException:
    return HTTPException(
        status.HTTP_404_NOT_FOUND,
        f"no {kind} named {name!r} (known: {', '.join(known) or 'none'})",
    )


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message)
