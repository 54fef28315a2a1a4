"""No credential in anything the library shows: logs, reprs, status, messages, output.

The assembled pieces get distinctive secrets (tests/security/security_helpers.py):
the management API password (given, and inside a URL), an AMQP URL's password,
the config file's password, the router's API token and ADMISSION_API_TOKEN.
Each piece is made to fail every way it can (bad credentials against the real
broker, connection refused, timeouts and errors served by respx, a config with
the password in the wrong place) and to succeed; every structlog event, every
stdlib log record, every repr and str, every exception and its chain, the
status, OpenAPI and metrics bodies and the CLI's output are collected, and none
may hold a secret (nor its basic-auth or URL-quoted form).  Redis is in
test_security_redis.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import respx
from security_helpers import (
    AMQP_PASSWORD,
    API_TOKEN,
    ENV_TOKEN,
    FILE_PASSWORD,
    MGMT_PASSWORD,
    URL_PASSWORD,
    Seen,
)
from services import free_port, rabbitmq_amqp, rabbitmq_management
from structlog.testing import capture_logs
from typer.testing import CliRunner

from admission.cli import app as cli
from admission.metrics import render_metrics
from admission.monitor import PressureMonitor
from admission.policy import AdmissionSettings, ConfigError, load_config, parse_config
from admission.registry import Registry
from admission.telemetry import ReadFailure
from admission.telemetry.rabbitmq import RabbitMQManagementSource
from admission.testing import virtual_clock
from integrations.web_api import (
    DEFAULT_PREFIX,
    app_from_environment,
    source_from_config,
    throughput_router,
)

pytestmark = pytest.mark.anyio
QUEUES = ["files-new_file", "titus-titus_input"]
BASE = "http://127.0.0.1:15672"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aio-pika, uvicorn's loop


@pytest.fixture
def seen(caplog: pytest.LogCaptureFixture) -> Seen:
    caplog.set_level("DEBUG")  # every library's debug lines too (httpx, aio-pika, ...)
    return Seen()


async def monitored(
    seen: Seen, label: str, source: RabbitMQManagementSource, why: str = ""
) -> None:
    """Two ticks of a monitor over ``source``, every read failing with ``why`` in its
    reason; everything the pieces show goes to ``seen``."""
    config = parse_config({"queues": [{"name": q} for q in QUEUES]})
    with virtual_clock() as clock:
        registry = Registry(config, clock=clock)
        monitor = PressureMonitor(source, registry=registry, interval=5, jitter=0)
        for _ in range(2):
            decision = await monitor.tick()
            seen.add(f"{label}: decision", decision)
            await clock.advance(5)
        readings = await source.read(QUEUES, now=clock.monotonic())
        status = registry.status()
        seen.add(f"{label}: readings", readings)
        seen.add(f"{label}: status JSON", status.model_dump_json())
        seen.add(f"{label}: transitions", registry.transitions())
        seen.add(f"{label}: metrics", render_metrics(registry))
        seen.add(f"{label}: objects", source, monitor, registry, registry.state)
    await source.aclose()
    for reading in readings.values():
        assert isinstance(reading, ReadFailure)
        assert why in reading.reason, reading
    for queue in status.queue_states:
        assert why in (queue.telemetry.last_error or "-"), queue.telemetry
    seen.add(f"{label}: repr after close", source)


@pytest.mark.service
async def test_the_management_source_shows_no_password_whatever_fails(
    seen: Seen, caplog: pytest.LogCaptureFixture
) -> None:
    management = rabbitmq_management()
    amqp = rabbitmq_amqp().replace("guest:guest@", f"guest:{AMQP_PASSWORD}@")
    closed = free_port()
    sources = {
        # 401 from the real broker.
        "wrong password": (
            RabbitMQManagementSource(
                management, username="guest", password=MGMT_PASSWORD, amqp_url=amqp, timeout=3
            ),
            "HTTP 401 (login failed)",
        ),
        # Connection refused, then the AMQP fallback refused by the real broker.
        "password in the URL": (
            RabbitMQManagementSource(
                f"http://admin:{quote(URL_PASSWORD, safe='')}@127.0.0.1:{closed}",
                amqp_url=amqp,
                timeout=3,
            ),
            "fallback AMQP 127.0.0.1:5672: cannot connect (ProbableAuthenticationError",
        ),
        # The same, the password pasted unencoded ('/' and '@' in it).
        "password in the URL as pasted": (
            RabbitMQManagementSource(f"http://admin:{URL_PASSWORD}@127.0.0.1:{closed}"),
            f"cannot connect to 127.0.0.1:{closed}",
        ),
        # Nothing listens on either port.
        "nothing listens": (
            RabbitMQManagementSource(
                f"http://127.0.0.1:{closed}",
                password=MGMT_PASSWORD,
                amqp_url=f"amqp://guest:{AMQP_PASSWORD}@127.0.0.1:{closed}/",
                timeout=3,
            ),
            f"fallback AMQP 127.0.0.1:{closed}: cannot connect",
        ),
    }
    with capture_logs() as events:
        for label, (source, why) in sources.items():
            seen.add(f"{label}: repr", source)
            await monitored(seen, label, source, why)
    seen.logs("management source", events, caplog)
    seen.assert_clean()


def _failing(request: httpx.Request) -> httpx.Response:
    # An error whose text carries the secrets, as a careless proxy or library might.
    raise RuntimeError(f"boom {request.headers['authorization']} {MGMT_PASSWORD}")


@pytest.mark.parametrize(
    "answer",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ConnectError(f"refused while sending {MGMT_PASSWORD}"),
        _failing,
        httpx.Response(500, text=f"upstream said: {MGMT_PASSWORD}"),
        httpx.Response(401, json={"error": "not_authorised", "reason": MGMT_PASSWORD}),
        httpx.Response(200, text=f'{{"messages_ready": "{MGMT_PASSWORD}"'),
        httpx.Response(200, json={"name": MGMT_PASSWORD, "messages_ready": 1}),
    ],
    ids=[
        "read timeout",
        "connect timeout",
        "refused",
        "error text",
        "500",
        "401",
        "bad json",
        "name",
    ],
)
async def test_respx_errors_with_the_secret_in_them_are_scrubbed(
    seen: Seen, caplog: pytest.LogCaptureFixture, answer: Any
) -> None:
    with capture_logs() as events, respx.mock(base_url=BASE, assert_all_called=True) as mock:
        for queue in QUEUES:
            route = mock.get(f"/api/queues/%2F/{queue}")
            if isinstance(answer, httpx.Response):
                route.return_value = answer
            else:
                route.side_effect = answer
        source = RabbitMQManagementSource(BASE, username="guest", password=MGMT_PASSWORD)
        await monitored(seen, "respx", source)
        sent = mock.calls.last.request.headers["authorization"]
    assert sent.startswith("Basic ")  # the password was used, only never shown
    seen.logs("respx", events, caplog)
    seen.assert_clean()


async def test_a_read_that_succeeds_shows_no_password_either(
    seen: Seen, caplog: pytest.LogCaptureFixture
) -> None:
    with capture_logs() as events, respx.mock(base_url=BASE) as mock:
        for queue in QUEUES:
            mock.get(f"/api/queues/%2F/{queue}").respond(
                200, json={"name": queue, "messages_ready": 3, "consumers": 1}
            )
        source = RabbitMQManagementSource(
            f"http://op:{quote(URL_PASSWORD, safe='')}@127.0.0.1:15672", mode="per_queue"
        )
        readings = await source.read(QUEUES, now=1.0)
        seen.add("good read", readings, source)
        await source.aclose()
    assert all(r.messages_ready == 3 for r in readings.values())  # type: ignore[union-attr]
    seen.logs("good read", events, caplog)
    seen.assert_clean()


# -- configuration, settings, the service ------------------------------------------------


@asynccontextmanager
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admission.test") as c:
        yield c


async def exercised(seen: Seen, label: str, app: Any, token: str) -> None:
    """Every route, without, with a wrong and with the right token; answers go to ``seen``."""
    async with client(app) as c:
        for path in ("/status", "/presets", "/transitions", "/metrics", "/status/nope"):
            response = await c.get(DEFAULT_PREFIX + path)
            seen.add(f"{label}: GET {path}", response.text, str(response.headers))
        openapi = await c.get("/openapi.json")
        seen.add(f"{label}: openapi", openapi.text)
        pin = {"scope": "queue", "name": QUEUES[0], "level": "critical", "ttl_seconds": 60}
        codes = []
        for auth in (None, "Bearer wrong", f"Bearer {token}x", f"Basic {token}", f"Bearer {token}"):
            headers = {} if auth is None else {"Authorization": auth}
            for body in (pin, {"scope": "galaxy"}):
                response = await c.post(DEFAULT_PREFIX + "/overrides", json=body, headers=headers)
                seen.add(f"{label}: POST {auth}", response.text, str(response.headers))
                codes.append(response.status_code)
            bad = await c.post(
                DEFAULT_PREFIX + "/overrides",
                content='{"scope": "galaxy"',
                headers={**headers, "content-type": "application/json"},
            )
            seen.add(f"{label}: POST not JSON {auth}", bad.text)
            gone = await c.delete(DEFAULT_PREFIX + "/overrides/nope", headers=headers)
            seen.add(f"{label}: DELETE {auth}", gone.text, str(gone.headers))
        evaluate = await c.post(DEFAULT_PREFIX + "/evaluate", json={"preset": "nope"})
        seen.add(f"{label}: evaluate", evaluate.text)
    assert codes == [401, 401, 403, 403, 403, 403, 401, 401, 201, 422], codes


async def test_the_service_from_the_environment_shows_no_token_nor_password(
    seen: Seen, caplog: pytest.LogCaptureFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = free_port()
    path = tmp_path / "admission.toml"
    path.write_text(
        f'queues = [{{name = "{QUEUES[0]}"}}, {{name = "{QUEUES[1]}"}}]\n'
        "[telemetry.rabbitmq]\n"
        f'url = "http://admin:{quote(URL_PASSWORD, safe="")}@127.0.0.1:{closed}"\n'
        f'password = "{FILE_PASSWORD}"\n'
        "timeout_seconds = 2\n",
        encoding="utf-8",
    )
    environ = {"ADMISSION_CONFIG": str(path), "ADMISSION_API_TOKEN": ENV_TOKEN}
    with capture_logs() as events:
        app = app_from_environment(environ)
        config = app.state.registry.config
        seen.add("config", config, config.telemetry, config.telemetry.rabbitmq, app.state.registry)
        seen.add("settings", AdmissionSettings.model_validate({"api_token": ENV_TOKEN}))
        seen.add("source", source_from_config(config))
        async with app.router.lifespan_context(app):  # the monitor's first tick: refused
            seen.add("monitor", app.state.monitor)
            await exercised(seen, "service", app, ENV_TOKEN)
        seen.add("status after", app.state.registry.status().model_dump_json())
        router = throughput_router(Registry(config), api_token=API_TOKEN)
        from fastapi import FastAPI

        mine = FastAPI()
        mine.include_router(router, prefix=DEFAULT_PREFIX)
        await exercised(seen, "router", mine, API_TOKEN)
    failure = app.state.registry.status().queue(QUEUES[0]).telemetry.last_error
    assert failure is not None
    assert "cannot connect" in failure  # the monitor did try, and says why
    seen.add("stdout/stderr", *capsys.readouterr())
    seen.logs("service", events, caplog)
    seen.assert_clean()


@pytest.mark.parametrize(
    ("table", "named"),
    [
        (f'password = ["{FILE_PASSWORD}"]', "telemetry.rabbitmq.password=***"),
        (f'pasword = "{FILE_PASSWORD}"', "telemetry.rabbitmq.pasword=***"),
        (f'secret_key = "{FILE_PASSWORD}"', "telemetry.rabbitmq.secret_key=***"),
        ('password_env = "ADMISSION_TEST_UNSET_PASSWORD"', "password_env='ADMISSION_TEST_"),
        (f'password = "{FILE_PASSWORD}"\ntimeout_seconds = 0', "timeout_seconds=0"),
    ],
)
def test_a_bad_configuration_names_the_key_never_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, named: str
) -> None:
    seen = Seen()
    path = tmp_path / "admission.toml"
    path.write_text(f"[telemetry.rabbitmq]\n{table}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        _password_from(path)
    assert named in str(info.value)
    seen.error("load_config", info.value)
    with pytest.raises(SystemExit):
        app_from_environment({"ADMISSION_CONFIG": str(path), "ADMISSION_API_TOKEN": ENV_TOKEN})
    result = CliRunner().invoke(cli, ["presets", "--config", str(path)])
    assert result.exit_code in (0, 2)
    seen.add("service start-up", *capsys.readouterr())
    seen.add("admission presets", result.output)
    seen.assert_clean()


def _password_from(path: Path) -> str:
    rabbitmq = load_config(path, environ={}).telemetry.rabbitmq
    assert rabbitmq is not None
    return rabbitmq.resolved_password().get_secret_value()


def test_the_cli_shows_no_password_given_to_it(tmp_path: Path) -> None:
    seen = Seen()
    path = tmp_path / "admission.toml"
    path.write_text(
        f'[telemetry.rabbitmq]\npassword = "{FILE_PASSWORD}"\n'
        f'url = "http://op:{quote(URL_PASSWORD, safe="")}@127.0.0.1:15672"\n',
        encoding="utf-8",
    )
    runner = CliRunner()
    runs = {
        "presets": runner.invoke(cli, ["presets", "--config", str(path)]),
        "presets --json": runner.invoke(cli, ["presets", "--json", "--config", str(path)]),
        "status refused": runner.invoke(
            cli, ["status", "--url", f"http://op:{URL_PASSWORD}@127.0.0.1:{free_port()}"]
        ),
        "status not http": runner.invoke(cli, ["status", "--url", f"ftp://op:{URL_PASSWORD}@x"]),
    }
    assert [r.exit_code for r in runs.values()] == [0, 0, 2, 2]
    assert "http://op:***@127.0.0.1" in runs["status refused"].output
    assert json.loads(runs["presets --json"].output)["presets"]
    for name, result in runs.items():
        seen.add(f"admission {name}", result.output)
    seen.assert_clean()


def test_the_demo_options_show_no_broker_password() -> None:
    from admission.demo.rabbitmq import check_urls
    from admission.demo.run import DemoOptions

    seen = Seen()
    options = DemoOptions(rabbitmq_url=f"amqp://guest:{AMQP_PASSWORD}@127.0.0.1:5672/")
    seen.add("DemoOptions", options)
    assert "amqp://guest:***@127.0.0.1:5672/" in repr(options)
    for url, management in (
        (f"http://guest:{AMQP_PASSWORD}@127.0.0.1:5672/", None),
        (f"amqp://guest:{AMQP_PASSWORD}@127.0.0.1:5672/vhost", None),
        (f"amqp://guest:{AMQP_PASSWORD}@127.0.0.1:5672/", f"ftp://op:{AMQP_PASSWORD}@x"),
    ):
        with pytest.raises(ValueError, match=r"--(rabbitmq|management)-url") as info:
            check_urls(url, management)
        seen.error("check_urls", info.value)
    seen.assert_clean()
