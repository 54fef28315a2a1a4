"""A ready status service: the router on an app whose lifespan runs the monitor.

``uvicorn integrations.web_api:app`` builds it from the environment
(``ADMISSION_CONFIG``, ``ADMISSION_PRESET``, ``ADMISSION_API_TOKEN``); a bad
configuration stops start-up with its one-line validation message.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import SecretStr, ValidationError

from admission import __version__
from admission.monitor import PressureMonitor
from admission.policy import AdmissionSettings, ConfigError, PolicyConfig, load_config
from admission.registry import Registry
from admission.telemetry import PressureSource
from integrations.web_api.router import DEFAULT_PREFIX, throughput_router

__all__ = ["app_from_environment", "create_app", "source_from_config"]


def source_from_config(config: PolicyConfig) -> PressureSource | None:
    """The telemetry source ``[telemetry.rabbitmq]`` describes, or ``None`` if absent."""
    rabbitmq = config.telemetry.rabbitmq
    if rabbitmq is None:
        return None
    from admission.telemetry.rabbitmq import RabbitMQManagementSource

    return RabbitMQManagementSource(
        rabbitmq.url,
        username=rabbitmq.username,
        password=rabbitmq.resolved_password().get_secret_value(),
        vhost=rabbitmq.vhost,
        timeout=rabbitmq.timeout_seconds,
    )


def create_app(
    config: PolicyConfig | None = None,
    *,
    registry: Registry | None = None,
    source: PressureSource | None = None,
    api_token: str | SecretStr | None = None,
    prefix: str = DEFAULT_PREFIX,
    interval: float | None = None,
) -> FastAPI:
    """A FastAPI app serving ``throughput_router`` under ``prefix``.

    Its lifespan runs a :class:`PressureMonitor` over ``source`` (by default
    the one ``[telemetry.rabbitmq]`` configures) for as long as the app
    serves; without a source no monitor runs and the status says
    ``monitor: absent``.  ``app.state.registry`` is the registry it serves.
    """
    if registry is None:
        registry = Registry(config)
    elif config is not None and registry.config is not config:
        raise ValueError("give config or registry, not both (the registry has its config)")
    telemetry = source if source is not None else source_from_config(registry.config)
    governed = registry

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if telemetry is None:
            yield
            return
        async with PressureMonitor(telemetry, registry=governed, interval=interval) as monitor:
            app.state.monitor = monitor
            yield

    app = FastAPI(
        title="admission throughput policy",
        version=__version__,
        summary="What is throttled, why, since when and until when.",
        lifespan=lifespan,
    )
    app.state.registry = registry
    app.state.monitor = None
    app.include_router(throughput_router(registry, api_token=api_token), prefix=prefix)
    return app


def app_from_environment(environ: Mapping[str, str] | None = None) -> FastAPI:
    """The app ``uvicorn integrations.web_api:app`` serves, configured from ``environ``.

    A configuration error exits with its message (``SystemExit``), not a
    traceback: the operator needs the key and the value, nothing else.
    """
    try:
        config = load_config(environ=environ)
        if environ is None:
            token = AdmissionSettings().api_token
        else:
            raw = environ.get("ADMISSION_API_TOKEN")
            token = SecretStr(raw) if raw else None
        return create_app(config, api_token=token)
    except (ConfigError, ValidationError, ValueError) as exc:
        print(f"admission: invalid configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
