"""Real services on 127.0.0.1 for the tests that need them.

A test that needs a service calls its helper first: on a laptop without the
service the test skips with the reason; under CI (``CI=true``) it fails, so a
broken service can never pass for a green run.
"""

from __future__ import annotations

import os
import socket

import httpx
import pytest

RABBITMQ_MANAGEMENT_URL = "http://127.0.0.1:15672"
RABBITMQ_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def unavailable(message: str) -> None:
    """Skip the test, or fail it under CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def rabbitmq_management() -> str:
    """The management API's URL, once it answers with guest/guest (else skip, or fail in CI)."""
    try:
        response = httpx.get(
            f"{RABBITMQ_MANAGEMENT_URL}/api/overview", auth=("guest", "guest"), timeout=3.0
        )
        response.raise_for_status()
    except httpx.HTTPError as exc:
        unavailable(f"RabbitMQ management API not reachable at 127.0.0.1:15672: {exc!r}")
    return RABBITMQ_MANAGEMENT_URL


def rabbitmq_amqp() -> str:
    """The AMQP URL, once 127.0.0.1:5672 accepts a connection (else skip, or fail in CI)."""
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=3.0):
            pass
    except OSError as exc:
        unavailable(f"RabbitMQ AMQP port not reachable at 127.0.0.1:5672: {exc!r}")
    return RABBITMQ_AMQP_URL


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
