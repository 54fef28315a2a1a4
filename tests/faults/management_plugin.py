"""Stopping and starting the real broker's management plugin, leaving it as found.

``rabbitmq-plugins disable rabbitmq_management`` stops the plugin and the two it
pulls in (management_agent, web_dispatch); measured on this machine (RabbitMQ
3.10.8): disable takes 7-11 real seconds (the API stops answering right before
the command returns), enable 2.4-5 s, after which ``/api/overview`` answers at
once, and the queues' figures come back with the next statistics round (~5 s).
"""

from __future__ import annotations

import shutil
import time

import anyio
import httpx
import pytest
from services import unavailable

PLUGIN = "rabbitmq_management"
DEADLINE = 90.0  # real seconds for a plugin command, or for the API to answer again


def plugins_command() -> str:
    """The ``rabbitmq-plugins`` executable (else skip, or fail under CI)."""
    found = shutil.which("rabbitmq-plugins") or shutil.which(
        "rabbitmq-plugins", path="/usr/sbin:/usr/lib/rabbitmq/bin"
    )
    if found is None:
        unavailable("rabbitmq-plugins is not installed here: cannot stop the management plugin")
    assert found is not None
    return found


async def plugin(command: str, action: str) -> float:
    """``rabbitmq-plugins <action> rabbitmq_management``; its real duration.

    ``PermissionError`` with the command's own words when it fails.
    """
    started = time.perf_counter()
    with anyio.fail_after(DEADLINE):
        done = await anyio.run_process([command, action, PLUGIN], check=False)
    if done.returncode != 0:
        why = (done.stderr or done.stdout).decode(errors="replace").strip()[-300:]
        raise PermissionError(f"`rabbitmq-plugins {action} {PLUGIN}` failed: {why}")
    return time.perf_counter() - started


async def api_answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient(auth=("guest", "guest"), timeout=2.0) as client:
            return (await client.get(f"{url}/api/overview")).status_code == 200
    except httpx.HTTPError:
        return False


async def disable(command: str, url: str) -> float:
    """Stop the plugin; check the API is gone.  Skips (fails under CI) when not permitted."""
    try:
        took = await plugin(command, "disable")
    except PermissionError as exc:
        unavailable(f"cannot disable the management plugin: {exc}")
    assert not await api_answers(url), "the management API still answers after disable"
    return took


async def restore(command: str, url: str) -> dict[str, float]:
    """Enable the plugin again and wait (bounded) until the API answers: the machine as found."""
    started = time.perf_counter()
    try:
        enable = await plugin(command, "enable")
    except PermissionError as exc:
        if await api_answers(url):
            return {}  # it was never disabled: nothing to restore
        pytest.fail(f"the management plugin is left DISABLED: {exc}", pytrace=False)
    deadline = started + DEADLINE
    while not await api_answers(url):
        if time.perf_counter() > deadline:
            pytest.fail(f"the management API did not come back within {DEADLINE:g} s")
        await anyio.sleep(0.25)
    return {"enable_real": enable, "api_back_real": time.perf_counter() - started}
