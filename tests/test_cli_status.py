"""``admission status --url URL``: a real uvicorn server, the CLI in a worker thread.

The registry behind the server is put into a known state on the virtual clock
first; the clock then stands still, so every figure the CLI shows is exact.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from anyio import to_thread
from fastapi import FastAPI, HTTPException
from fastapi.responses import PlainTextResponse
from live_server_helpers import live_server, silent_server
from monitor_helpers import NEW_FILE, TITUS, Pipeline, pipeline
from services import free_port
from test_cli import assert_error
from typer.testing import CliRunner, Result
from web_api_helpers import app_for

from admission.cli import app
from admission.cli_status import DEFAULT_PREFIX, status_url
from admission.policy import FailureKind
from admission.testing import VirtualClock
from integrations.web_api import DEFAULT_PREFIX as ROUTER_PREFIX

runner = CliRunner()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn


def run(*args: str) -> Result:
    return runner.invoke(app, list(args))


async def run_beside(*args: str) -> Result:
    """Run the CLI in a worker thread, so the server on this loop keeps serving."""
    return await to_thread.run_sync(lambda: run(*args))


def rows(output: str) -> list[list[str]]:
    """Every table row of ``output``, its cells stripped."""
    return [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in output.splitlines()
        if line.startswith("│")
    ]


def row(output: str, first: str, number: int = 0) -> list[str]:
    """The ``number``-th row whose first cell is ``first``."""
    return [cells for cells in rows(output) if cells[0] == first][number]


async def served_status(base: str) -> dict[str, Any]:
    """The server's own /status, fetched without the CLI."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{base}{ROUTER_PREFIX}/status")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@asynccontextmanager
async def governed(clock: VirtualClock) -> AsyncIterator[Pipeline]:
    """The pipeline with its monitor running, polled every 5 s on the virtual clock."""
    p = pipeline(clock, NEW_FILE, TITUS)
    async with p.monitor:
        yield p


def test_help_lists_every_command() -> None:
    names = [c.name for c in app.registered_commands]
    assert {"replay", "presets", "status"} <= set(names)
    result = run("--help")
    assert result.exit_code == 0
    for name in names:
        assert f" {name} " in result.stdout, name


def test_the_default_prefix_is_the_router_s() -> None:
    assert DEFAULT_PREFIX == ROUTER_PREFIX


@pytest.mark.parametrize(
    ("given", "fetched"),
    [
        ("http://127.0.0.1:8000", f"http://127.0.0.1:8000{ROUTER_PREFIX}/status"),
        ("http://127.0.0.1:8000/", f"http://127.0.0.1:8000{ROUTER_PREFIX}/status"),
        (f"https://h{ROUTER_PREFIX}", f"https://h{ROUTER_PREFIX}/status"),
        (f"http://h{ROUTER_PREFIX}/status/", f"http://h{ROUTER_PREFIX}/status"),
        ("http://h/api/policy", "http://h/api/policy/status"),
        (" http://h/status?x=1#top", "http://h/status?x=1"),
    ],
)
def test_the_url_is_the_server_the_router_or_the_status(given: str, fetched: str) -> None:
    assert status_url(given) == fetched


@pytest.mark.anyio
async def test_the_tables_show_the_live_figures(admission_clock: VirtualClock) -> None:
    async with governed(admission_clock) as p:
        p.source.set(NEW_FILE, 500, unacked=7, consumers=2)
        await p.until(40)
        p.source.set(TITUS, 30, unacked=1, consumers=1)
        await p.until(65)  # new_file critical since 65 s; titus 20 s into its 60 s window
        pin = p.registry.add_override(
            "class", "standard", level="warning", ttl_seconds=600, reason="maintenance window"
        )
        async with live_server(app_for(p)) as base:
            result = await run_beside("status", "--url", base)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"Policy status of {base}{ROUTER_PREFIX}/status at 2026-01-01T00:01:05+00:00" in out
    overview = {cells[0]: cells[1] for cells in rows(out) if len(cells) == 2}
    assert overview == {
        "preset": "balanced",
        "level": "critical",
        "policy active": "yes",
        "fail-safe": "no",
        "telemetry stale": "no",
        "monitor": "running",
        "sustained": "60s of 60s",
        "cooldown": "120s",
    }
    assert row(out, NEW_FILE)[1:] == [
        "500", "7", "2", "messages_ready 500", "50 / 120", "critical", "00:01:05 (0s ago)"
    ]  # fmt: skip
    assert row(out, NEW_FILE, 1)[1:] == ["-", "-", "-", "ok, sample 0s old"]
    assert row(out, TITUS)[1:] == [
        "30", "1", "1", "messages_ready 30", "20 / 60", "normal", "00:00:00 (65s ago)"
    ]  # fmt: skip
    assert row(out, TITUS, 1)[1:] == [
        "warning",
        "40s",
        "sustained: 20s of 60s",
        "ok, sample 0s old",
    ]
    standard = row(out, "standard")
    assert standard[:9] == ["standard", "warning", "3", "1", "6", "6", "0", "0", "0"]
    assert standard[9].startswith(f"pinned to warning by override {pin.id}")
    assert row(out, "expensive") == [
        "expensive", "critical", "1", "1", "0.5", "1", "0 (deferring)", "0", "0",
        "queue files-new_file is critical",
    ]  # fmt: skip
    assert row(out, pin.id) == [
        pin.id, "class", "standard", "warning", "2026-01-01T00:11:05+00:00", "600s",
        "maintenance window",
    ]  # fmt: skip
    assert out.rstrip().endswith("warnings: none")


@pytest.mark.anyio
async def test_fail_safe_shows_its_reason_and_the_failing_telemetry(
    admission_clock: VirtualClock,
) -> None:
    async with governed(admission_clock) as p:
        p.source.fail(TITUS, FailureKind.CONNECTION, "connection reset by broker")
        await p.until(15)  # read well at 0 s, then failed at 5, 10 and 15 s
        async with live_server(app_for(p)) as base:
            result = await run_beside("status", "--url", base)
            served = await served_status(base)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert served["fail_safe"] is True
    overview = {cells[0]: cells[1] for cells in rows(out) if len(cells) == 2}
    assert overview["fail-safe"] == f"yes: {served['fail_safe_reason']}"
    assert "connection reset by broker" in overview["fail-safe"]
    assert overview["telemetry stale"] == "yes"
    assert row(out, TITUS)[6] == "fail_safe"
    telemetry = row(out, TITUS, 1)[4]
    assert telemetry.startswith("failing, sample 15s old, 3 failed reads: ")
    assert "connection reset by broker" in telemetry
    (titus,) = [q for q in served["queue_states"] if q["queue"] == TITUS]
    assert f"{TITUS} fail-safe: {titus['fail_safe_reason']}" in out
    for warning in served["warnings"]:
        assert f"warning: {warning}" in out
    assert served["warnings"]


@pytest.mark.anyio
async def test_json_is_the_status_as_served_for_every_form_of_url(
    admission_clock: VirtualClock,
) -> None:
    async with governed(admission_clock) as p:
        p.source.set(NEW_FILE, 80)
        await p.until(30)
        async with live_server(app_for(p)) as base:
            served = await served_status(base)
            printed = [
                json.loads((await run_beside("status", "--url", url, "--json")).stdout)
                for url in (base, base + ROUTER_PREFIX, f"{base}{ROUTER_PREFIX}/status")
            ]
    assert printed == [served, served, served]
    assert served["queue_states"][0]["pending_level"] == "warning"


@pytest.mark.anyio
async def test_a_path_with_no_router_is_a_404_naming_the_url(
    admission_clock: VirtualClock,
) -> None:
    async with governed(admission_clock) as p, live_server(app_for(p)) as base:
        result = await run_beside("status", "--url", f"{base}/elsewhere")
    assert_error(result, f"{base}/elsewhere/status: HTTP 404 Not Found: Not Found")


def _impostor() -> FastAPI:
    """A service that answers on the status paths, but not with the contract."""
    impostor = FastAPI()

    @impostor.get(f"{ROUTER_PREFIX}/status")
    async def old_shape() -> dict[str, Any]:
        return {"queue_pressure_level": "normal", "policy_active": False}

    @impostor.get("/text/status", response_class=PlainTextResponse)
    async def text() -> str:
        return "all good"

    @impostor.get("/array/status")
    async def array() -> list[int]:
        return [1, 2]

    @impostor.get("/warming/status")
    async def warming() -> None:
        raise HTTPException(503, "monitor warming up")

    return impostor


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("", "the answer is not the status contract: requested_preset: Field required (and "),
        ("/text", "the answer is not JSON (text/plain; charset=utf-8)"),
        ("/array", "the answer is not the status contract: the body: Input should be a valid"),
        ("/warming", "HTTP 503 Service Unavailable: monitor warming up"),
    ],
)
async def test_an_answer_that_is_not_the_contract_is_one_line(path: str, problem: str) -> None:
    async with live_server(_impostor()) as base:
        result = await run_beside("status", "--url", base + path)
    target = f"{base}{path or ROUTER_PREFIX}/status"
    assert_error(result, f"{target}: {problem}")


def test_connection_refused_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run("status", "--url", url)
    assert_error(result, f"{url}{ROUTER_PREFIX}/status: cannot connect (", "refused")


def test_a_server_that_never_answers_times_out() -> None:
    with silent_server() as url:
        result = run("status", "--url", url, "--timeout", "0.2")
    assert_error(result, f"{url}{ROUTER_PREFIX}/status: no answer within 0.2s (timeout)")


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("--url", "127.0.0.1:8000"), "--url '127.0.0.1:8000': not an http(s) URL"),
        (("--url", "ftp://h/x"), "--url 'ftp://h/x': not an http(s) URL"),
        (("--url", "http://h", "--timeout", "0"), "--timeout 0: must be a positive number"),
        (("--url", "http://h", "--timeout", "nan"), "--timeout nan: must be a positive number"),
    ],
)
def test_bad_options_are_named(args: tuple[str, ...], problem: str) -> None:
    assert_error(run("status", *args), problem)


def test_without_httpx_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # import httpx raises ImportError
    result = run("status", "--url", "http://127.0.0.1:8000")
    assert_error(result, "admission status needs httpx: pip install 'admission[cli]'")
