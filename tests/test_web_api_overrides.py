"""The override routes: bearer token (none configured, missing, wrong, right),
an override seen in the status and gone at its TTL, and clear 422s."""

from __future__ import annotations

from typing import Any

import pytest
from monitor_helpers import NEW_FILE, RATE
from web_api_helpers import AUTH, TOKEN, served, wall

from admission.testing import VirtualClock
from integrations.web_api import throughput_router

pytestmark = pytest.mark.anyio

PIN = {"scope": "queue", "name": NEW_FILE, "level": "critical", "ttl_seconds": 30}


async def test_without_a_configured_token_the_routes_do_not_exist(
    admission_clock: VirtualClock,
) -> None:
    async with served(admission_clock, token=None) as api:
        created = await api.post("/overrides", json=PIN, headers=AUTH)
        deleted = await api.delete("/overrides/abc", headers=AUTH)
        status = await api.status()
    assert (created.status_code, deleted.status_code) == (404, 404)
    assert "no API token is configured" in created.json()["detail"]
    assert status["overrides"] == []


@pytest.mark.parametrize(
    ("headers", "code", "detail"),
    [
        ({}, 401, "a bearer token is required"),
        ({"Authorization": f"Basic {TOKEN}"}, 401, "a bearer token is required"),
        ({"Authorization": "Bearer wrong"}, 403, "the bearer token is not valid"),
        ({"Authorization": f"Bearer {TOKEN}x"}, 403, "the bearer token is not valid"),
    ],
)
async def test_a_missing_or_wrong_token_changes_nothing(
    admission_clock: VirtualClock, headers: dict[str, str], code: int, detail: str
) -> None:
    async with served(admission_clock) as api:
        created = await api.post("/overrides", json=PIN, headers=headers)
        removed = await api.delete("/overrides/abc", headers=headers)
        status = await api.status()
    assert (created.status_code, removed.status_code) == (code, code)
    assert detail in created.json()["detail"]
    if code == 401:
        assert created.headers["www-authenticate"] == "Bearer"
    assert status["overrides"] == []
    assert TOKEN not in created.text


async def test_an_override_shows_retunes_and_expires_at_its_ttl(
    admission_clock: VirtualClock,
) -> None:
    async with served(admission_clock) as api, api.pipeline.monitor:
        created = await api.post("/overrides", json={**PIN, "reason": "drill"}, headers=AUTH)
        assert created.status_code == 201, created.text
        override = created.json()
        assert (override["scope"], override["name"], override["level"]) == (
            "queue",
            NEW_FILE,
            "critical",
        )
        assert (override["reason"], override["expires_at"]) == ("drill", wall(30))
        pinned = await api.status()
        assert api.pipeline.expensive_rate() == RATE["critical"]
        await api.pipeline.until(29.999)
        still = await api.status()
        await api.pipeline.until(30)
        expired = await api.status()
        assert api.pipeline.expensive_rate() == RATE["normal"]
        records = (await api.get("/transitions")).json()["transitions"]
    assert pinned["overrides"] == [override]
    assert pinned["queue_states"][0]["severity"] == "critical"
    assert pinned["queue_states"][0]["pinned_by"] == override["id"]
    assert pinned["policy_active"] is True
    assert still["overrides"][0]["remaining_seconds"] == pytest.approx(0.001)
    assert expired["overrides"] == []
    assert expired["queue_states"][0]["severity"] == "normal"
    reasons = [(t["scope"], t["reason"], t["at"]) for t in records if t["name"] == NEW_FILE]
    assert reasons == [("queue", "override_set", wall(0)), ("queue", "override_expired", wall(30))]


async def test_an_override_is_lifted_by_its_id(admission_clock: VirtualClock) -> None:
    async with served(admission_clock) as api:
        override = (await api.post("/overrides", json=PIN, headers=AUTH)).json()
        removed = await api.delete(f"/overrides/{override['id']}", headers=AUTH)
        again = await api.delete(f"/overrides/{override['id']}", headers=AUTH)
        status = await api.status()
    assert removed.status_code == 204
    assert removed.content == b""
    assert again.status_code == 404
    assert again.json() == {"detail": f"no override with id {override['id']!r}"}
    assert status["overrides"] == []
    assert status["queue_states"][0]["severity"] == "normal"


async def test_a_preset_pin_on_a_class(admission_clock: VirtualClock) -> None:
    pin = {"scope": "class", "name": "expensive", "preset": "aggressive", "ttl_seconds": 60}
    async with served(admission_clock) as api:
        created = await api.post("/overrides", json=pin, headers=AUTH)
        cls = (await api.get("/classes/expensive")).json()
    assert created.status_code == 201, created.text
    assert (cls["preset"], cls["active_parallelism"]) == ("aggressive", 2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "no-such-queue"}, "no-such-queue"),
        ({"scope": "class", "name": "no-such-class"}, "no-such-class"),
        ({"level": None, "preset": "no-such-preset"}, "no-such-preset"),
    ],
)
async def test_unknown_names_in_an_override_are_a_422_naming_them(
    admission_clock: VirtualClock, change: dict[str, Any], message: str
) -> None:
    async with served(admission_clock) as api:
        response = await api.post("/overrides", json={**PIN, **change}, headers=AUTH)
    assert response.status_code == 422
    assert message in response.json()["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"ttl_seconds": 10**9}, "ttl_seconds"),
        ({"level": "panic"}, "level"),
        ({"scope": "galaxy"}, "scope"),
    ],
)
async def test_bad_override_fields_are_a_422_naming_the_field(
    admission_clock: VirtualClock, change: dict[str, Any], field: str
) -> None:
    async with served(admission_clock) as api:
        response = await api.post("/overrides", json={**PIN, **change}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == field


async def test_level_and_preset_together_are_refused(admission_clock: VirtualClock) -> None:
    async with served(admission_clock) as api:
        response = await api.post("/overrides", json={**PIN, "preset": "aggressive"}, headers=AUTH)
    assert response.status_code == 422
    assert "exactly one of level or preset" in response.json()["detail"][0]["msg"]


def test_an_empty_token_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="api_token must not be empty"):
        throughput_router(api_token="  ")


async def test_the_token_is_checked_before_the_body(admission_clock: VirtualClock) -> None:
    async with served(admission_clock) as api:
        response = await api.post("/overrides", json={"scope": "galaxy"})
    assert response.status_code == 401
