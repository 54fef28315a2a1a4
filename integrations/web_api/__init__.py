"""The throughput-policy status API (the ``web`` extra).

``throughput_router(registry)`` for your own FastAPI app, mounted at
:data:`DEFAULT_PREFIX`; ``create_app(config)`` for a status service of its
own; ``app`` (built from the environment on first access) for
``uvicorn integrations.web_api:app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from integrations.web_api.router import DEFAULT_PREFIX, throughput_router
from integrations.web_api.service import app_from_environment, create_app, source_from_config

if TYPE_CHECKING:
    from fastapi import FastAPI

    app: FastAPI

__all__ = [
    "DEFAULT_PREFIX",
    "app",
    "app_from_environment",
    "create_app",
    "source_from_config",
    "throughput_router",
]


def __getattr__(name: str) -> Any:
    # Built on first access, so importing the package reads no environment.
    if name == "app":
        built = app_from_environment()
        globals()["app"] = built
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
