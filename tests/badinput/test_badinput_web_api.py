"""schemathesis against the override routes: the bearer token is enforced on every request.

tests/test_web_api_schema.py checks that every answer is documented; here each
generated ``POST /overrides`` and ``DELETE /overrides/{id}`` (valid bodies and
ids as well as junk) is sent without a token, with a wrong one, with the right
one, and to a router that has no token configured: without the right token the
answer is 401 or 403 (404 when no token is configured) and nothing changes;
with it, never a 5xx.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis import Case

from admission.policy import parse_config
from admission.registry import Registry
from integrations.web_api import DEFAULT_PREFIX, throughput_router

TOKEN = "badinput-token-5d1e"
QUEUES = ["files-new_file", "files-document_conversion_input", "titus-titus_input"]
PROFILE = settings(
    max_examples=30, deadline=None, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck),
)  # fmt: skip
CALLS: Counter[str] = Counter()


def _app(token: str | None) -> tuple[FastAPI, Registry]:
    registry = Registry(parse_config({"queues": [{"name": q} for q in QUEUES]}))
    registry.add_override("queue", QUEUES[0], level="warning", ttl_seconds=3600)
    app = FastAPI()
    app.include_router(throughput_router(registry, api_token=token), prefix=DEFAULT_PREFIX)
    return app, registry


GUARDED_APP, GUARDED = _app(TOKEN)
OPEN_APP, OPEN = _app(None)
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", 401, 403, 404, 422]}}}
)
guarded = schemathesis.openapi.from_asgi("/openapi.json", GUARDED_APP, config=CONFIG).include(
    path_regex="/overrides"
)
# A router without a token still documents the routes (they answer 404, as documented,
# so schemathesis' own expectation of a 401 for a missing token does not apply).
UNCONFIGURED = schemathesis.Config.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {"expected-statuses": ["2xx", 401, 403, 404, 422]},
            "missing_required_header": {"enabled": False},
        }
    }
)
unconfigured = schemathesis.openapi.from_asgi(
    "/openapi.json", OPEN_APP, config=UNCONFIGURED
).include(path_regex="/overrides")


def _without_auth(case: Case[Any]) -> None:
    headers = case.headers
    for name in [h for h in headers or () if h.lower() == "authorization"]:
        del headers[name]


def _pins(registry: Registry) -> tuple[str, ...]:
    return tuple(o.id for o in registry.state.overrides)


def _send(case: Case[Any], registry: Registry, way: str, headers: dict[str, str]) -> Any:
    """Send ``case``; checks every answer shares: documented, never 5xx, a 405 for other methods.

    Returns the response and the Authorization header actually sent (schemathesis
    also sends cases with the security header left out on purpose).
    """
    response = case.call_and_validate(headers=headers)
    assert response.status_code < 500, (response.status_code, response.text)
    sent = response.request.headers.get("Authorization")
    if case.method.upper() != case.operation.method.upper():
        # schemathesis also tries methods the route does not have: they never reach it.
        assert response.status_code == 405, (case.method, response.status_code)
        CALLS[f"{way}: other method"] += 1
        return None, sent
    CALLS[way] += 1
    return response, sent


@guarded.parametrize()
@PROFILE
def test_without_a_token_every_override_request_is_401_and_changes_nothing(
    case: Case[Any],
) -> None:
    before = _pins(GUARDED)
    _without_auth(case)
    response, sent = _send(case, GUARDED, "no token", {})
    assert sent is None
    if response is not None:
        assert response.status_code == 401, (response.status_code, response.text)
        assert response.headers["www-authenticate"] == ["Bearer"]
    assert _pins(GUARDED) == before


@guarded.parametrize()
@PROFILE
def test_with_a_wrong_token_every_override_request_is_refused(case: Case[Any]) -> None:
    before = _pins(GUARDED)
    wrong = str((case.headers or {"Authorization": ""}).get("Authorization", ""))
    if wrong.removeprefix("Bearer ") == TOKEN or not wrong:  # never the right one
        wrong = f"Bearer {TOKEN}x"
    response, sent = _send(case, GUARDED, "wrong token", {"Authorization": wrong})
    assert sent != f"Bearer {TOKEN}"
    if response is not None:
        # "Bearer " with nothing after it is no token (401); anything else a wrong one (403).
        assert response.status_code in (401, 403), (sent, response.status_code, response.text)
        assert TOKEN not in response.text
    assert _pins(GUARDED) == before


@guarded.parametrize()
@PROFILE
def test_with_the_right_token_no_override_request_is_a_server_error(case: Case[Any]) -> None:
    # Every other body pins a known queue, so some requests get all the way through.
    if isinstance(case.body, dict) and case.body.get("scope") == "queue" and CALLS["right"] % 2:
        case.body.pop("preset", None)
        case.body.update(name=QUEUES[0], level="critical")
    if "override_id" in (case.path_parameters or {}) and _pins(GUARDED) and CALLS["right"] % 3:
        case.path_parameters["override_id"] = _pins(GUARDED)[0]
    response, sent = _send(case, GUARDED, "right", {"Authorization": f"Bearer {TOKEN}"})
    if response is None:
        return
    CALLS[f"right token: {response.status_code}"] += 1
    if sent is None:  # left out on purpose by schemathesis
        assert response.status_code == 401
    elif response.status_code == 201:  # a created override is in force
        assert response.json()["id"] in _pins(GUARDED)
    else:
        assert response.status_code in (204, 400, 404, 422), (response.status_code, response.text)


@unconfigured.parametrize()
@PROFILE
def test_without_a_configured_token_the_override_routes_are_404(case: Case[Any]) -> None:
    before = _pins(OPEN)
    response, _ = _send(case, OPEN, "no token configured", {"Authorization": f"Bearer {TOKEN}"})
    if response is not None:
        assert response.status_code == 404, (response.status_code, response.text)
        assert "no API token is configured" in response.text
    assert _pins(OPEN) == before


def test_every_way_was_tried(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs after the module's other tests: prints how many requests each way sent."""
    if not CALLS:
        pytest.skip("run with the module's other tests")
    for way in ("no token", "wrong token", "right", "no token configured"):
        assert CALLS[way] >= 2 * 10, CALLS  # both operations, many examples each
    for status in (201, 204, 422):
        assert CALLS[f"right token: {status}"], CALLS
    with capsys.disabled():
        print("\nschemathesis override requests:", dict(sorted(CALLS.items())))
