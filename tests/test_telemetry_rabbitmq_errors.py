"""RabbitMQManagementSource failures a real broker cannot be made to give (respx).

Statuses, timeouts, transport errors, credentials that must never leak, the
client's ownership, and where the AMQP fallback does not run.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator

import httpx
import pytest
import respx
from rabbitmq_helpers import BASE, NEW_FILE, ONE, TITUS, WHERE, body, fails
from services import free_port

from admission.telemetry import FailureKind, QueueSample, ReadFailure
from admission.telemetry.rabbitmq import RabbitMQManagementSource

pytestmark = pytest.mark.anyio

SECRET = "Zq9-s3cr3t-pa55w0rd"


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


# -- HTTP failures ------------------------------------------------------------------


async def test_404_is_a_missing_queue(mock: respx.MockRouter) -> None:
    got = await fails(mock, httpx.Response(404, json=body("missing-queue-404.json")))
    assert got.kind is FailureKind.MISSING_QUEUE
    assert got.reason == f"{WHERE}: HTTP 404 (no queue '{NEW_FILE}' in vhost '/')"


async def test_401_is_bad_credentials(mock: respx.MockRouter) -> None:
    got = await fails(mock, httpx.Response(401, json=body("bad-credentials-401.json")))
    assert (got.kind, got.reason) == (
        FailureKind.BAD_CREDENTIALS,
        f"{WHERE}: HTTP 401 (login failed)",
    )


@pytest.mark.parametrize("status", [500, 503, 403, 302])
async def test_other_statuses_are_http_status_failures(mock: respx.MockRouter, status: int) -> None:
    got = await fails(mock, httpx.Response(status, text="<html>oops</html>"))
    assert (got.kind, got.reason) == (FailureKind.HTTP_STATUS, f"{WHERE}: HTTP {status}")


async def test_one_failing_queue_does_not_spoil_the_others(mock: respx.MockRouter) -> None:
    mock.get(ONE).respond(500)
    mock.get(f"/api/queues/%2F/{TITUS}").respond(200, json=body("queue-titus-titus_input-t40.json"))
    source = RabbitMQManagementSource(mode="per_queue")
    readings = await source.read([NEW_FILE, TITUS], now=1.0)
    await source.aclose()
    assert isinstance(readings[NEW_FILE], ReadFailure)
    assert isinstance(readings[TITUS], QueueSample)


async def test_a_timeout_is_a_timeout_failure(mock: respx.MockRouter) -> None:
    got = await fails(mock, httpx.ReadTimeout("timed out"), timeout=2.5)
    assert (got.kind, got.reason) == (
        FailureKind.TIMEOUT,
        f"{WHERE}: no answer within 2.5s (ReadTimeout)",
    )


async def test_a_server_that_never_answers_times_out_for_real() -> None:
    # A listening socket nobody serves: the kernel accepts the connection, and
    # the request then waits for an answer that never comes.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        source = RabbitMQManagementSource(f"http://127.0.0.1:{port}", timeout=0.2)
        got = (await source.read([NEW_FILE], now=1.0))[NEW_FILE]
        await source.aclose()
    assert isinstance(got, ReadFailure)
    assert got.kind is FailureKind.TIMEOUT
    assert got.reason == f"{WHERE}: no answer within 0.2s (ReadTimeout)"


async def test_connection_errors_are_connection_failures(mock: respx.MockRouter) -> None:
    got = await fails(mock, httpx.ConnectError("[Errno 111] Connection refused"))
    assert got.kind is FailureKind.CONNECTION
    assert (
        got.reason == f"{WHERE}: cannot connect to 127.0.0.1:15672 ([Errno 111] Connection refused)"
    )
    got = await fails(mock, httpx.RemoteProtocolError("peer closed connection"))
    assert got.kind is FailureKind.CONNECTION


async def test_an_unexpected_exception_is_a_source_error(mock: respx.MockRouter) -> None:
    got = await fails(mock, RuntimeError("transport exploded"))
    assert (got.kind, got.reason) == (
        FailureKind.SOURCE_ERROR,
        f"{WHERE}: RuntimeError: transport exploded",
    )


# -- credentials, configuration and lifecycle ----------------------------------------


async def test_no_credential_ever_appears_in_repr_or_reasons(mock: respx.MockRouter) -> None:
    token = base64.b64encode(f"ops:{SECRET}".encode()).decode()
    amqp = f"amqp://ops:{SECRET}@127.0.0.1:{free_port()}/"
    source = RabbitMQManagementSource(f"http://ops:{SECRET}@127.0.0.1:15672/", amqp_url=amqp)
    assert repr(source) == (
        "RabbitMQManagementSource(url='http://127.0.0.1:15672', vhost='/', username='ops', "
        f"password='***', mode='auto', amqp_url='amqp://ops:***@127.0.0.1:{amqp.split(':')[3]}')"
    )
    assert source.url == BASE
    answers: list[httpx.Response | Exception] = [
        httpx.Response(401),
        httpx.Response(503),
        httpx.ConnectError(f"refused for ops:{SECRET}"),
        RuntimeError(f"Authorization: Basic {token}"),
        httpx.Response(200, text="{broken"),
    ]
    reasons = []
    route = mock.get(ONE)
    for answer in answers:
        if isinstance(answer, Exception):
            route.side_effect = answer
        else:
            route.side_effect = None
            route.return_value = answer
        got = (await source.read([NEW_FILE], now=1.0))[NEW_FILE]
        assert isinstance(got, ReadFailure)
        reasons.append(got.reason)
    await source.aclose()
    assert route.calls.last.request.headers["authorization"] == f"Basic {token}"
    for text in (repr(source), *reasons):
        assert SECRET not in text
        assert token not in text
    assert "refused for ops:***" in reasons[2]
    assert "Basic ***" in reasons[3]


async def test_explicit_credentials_win_over_the_urls(mock: respx.MockRouter) -> None:
    route = mock.get(ONE).respond(200, json=body("queue-files-new_file-t40.json"))
    source = RabbitMQManagementSource(
        "http://ignored:nope@127.0.0.1:15672", username="monitor", password="right"
    )
    await source.read([NEW_FILE], now=1.0)
    await source.aclose()
    assert route.calls.last.request.headers["authorization"] == (
        "Basic " + base64.b64encode(b"monitor:right").decode()
    )
    assert "nope" not in repr(source)


def test_bad_configuration_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="mode must be"):
        RabbitMQManagementSource(mode="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be"):
        RabbitMQManagementSource(timeout=0)
    with pytest.raises(ValueError, match="http"):
        RabbitMQManagementSource("amqp://user:pw@127.0.0.1:5672")
    with pytest.raises(ValueError, match="url must be an http") as refused:
        RabbitMQManagementSource("ftp://user:Zq9-s3cr3t@host")
    assert "Zq9-s3cr3t" not in str(refused.value)


async def test_no_queues_no_request(mock: respx.MockRouter) -> None:
    source = RabbitMQManagementSource()
    assert await source.read([], now=0.0) == {}
    assert not mock.calls


async def test_the_client_is_owned_or_borrowed(mock: respx.MockRouter) -> None:
    mock.get(ONE).respond(200, json=body("queue-files-new_file-t40.json"))
    borrowed = httpx.AsyncClient()
    source = RabbitMQManagementSource(client=borrowed, mode="per_queue")
    assert isinstance((await source.read([NEW_FILE], now=1.0))[NEW_FILE], QueueSample)
    await source.aclose()
    assert not borrowed.is_closed
    assert isinstance((await source.read([NEW_FILE], now=2.0))[NEW_FILE], QueueSample)
    await borrowed.aclose()

    owner = RabbitMQManagementSource(mode="per_queue")
    await owner.read([NEW_FILE], now=1.0)
    own = owner._client
    assert own is not None
    await owner.aclose()
    assert own.is_closed
    assert isinstance((await owner.read([NEW_FILE], now=2.0))[NEW_FILE], QueueSample)
    assert owner._client is not own  # reopened after aclose
    await owner.aclose()


# -- the degraded path, where it cannot run ------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio_the_amqp_fallback_is_skipped(mock: respx.MockRouter) -> None:
    amqp = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    got = await fails(mock, httpx.Response(503), amqp_url=amqp)
    assert (got.kind, got.reason) == (FailureKind.HTTP_STATUS, f"{WHERE}: HTTP 503")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_when_amqp_fails_too_the_reason_names_both(mock: respx.MockRouter) -> None:
    port = free_port()
    got = await fails(
        mock, httpx.Response(503), amqp_url=f"amqp://guest:{SECRET}@127.0.0.1:{port}/"
    )
    assert got.kind is FailureKind.HTTP_STATUS
    assert got.reason.startswith(
        f"{WHERE}: HTTP 503; fallback AMQP 127.0.0.1:{port}: cannot connect ("
    )
    assert SECRET not in got.reason


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_client_errors_never_take_the_amqp_fallback(mock: respx.MockRouter) -> None:
    got = await fails(mock, httpx.Response(404), amqp_url=f"amqp://g:g@127.0.0.1:{free_port()}/")
    assert got.reason == f"{WHERE}: HTTP 404 (no queue '{NEW_FILE}' in vhost '/')"
