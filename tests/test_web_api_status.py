"""The read routes of the status router: status, one queue, one class, presets,
transitions, metrics, and the what-if that changes nothing."""

from __future__ import annotations

import pytest
from monitor_helpers import NEW_FILE, TITUS
from test_registry import CLASS, QUEUE, TELEMETRY, TOP
from web_api_helpers import served, wall

from admission.testing import VirtualClock

pytestmark = pytest.mark.anyio


async def test_status_carries_every_field_of_the_contract(admission_clock: VirtualClock) -> None:
    async with served(admission_clock) as api, api.pipeline.monitor:
        api.pipeline.source.set(NEW_FILE, 70)
        await api.pipeline.until(5)
        body = await api.status()
    assert set(body) >= TOP
    (queue,) = body["queue_states"]
    assert set(queue) >= QUEUE
    assert set(queue["telemetry"]) >= TELEMETRY
    assert {c["class_name"] for c in body["class_states"]} == {"standard", "expensive"}
    assert all(set(c) >= CLASS for c in body["class_states"])
    assert (queue["queue"], queue["queued_messages"], queue["severity"]) == (NEW_FILE, 70, "normal")
    assert (queue["pending_level"], queue["sustained_seconds"]) == ("warning", 0.0)
    assert body["requested_preset"] == body["active_preset"] == "balanced"
    assert body["timestamp"] == wall(5)
    assert body["monitor"] == "running"


async def test_one_queue_and_one_class(admission_clock: VirtualClock) -> None:
    async with served(admission_clock, NEW_FILE, TITUS) as api:
        queue = await api.get(f"/status/{TITUS}")
        cls = await api.get("/classes/expensive")
    assert queue.status_code == 200
    assert queue.json()["queue"] == TITUS
    assert (queue.json()["warning_threshold"], queue.json()["critical_threshold"]) == (20, 60)
    assert cls.status_code == 200
    assert (cls.json()["class_name"], cls.json()["active_parallelism"]) == ("expensive", 1)


async def test_unknown_names_are_a_404_that_says_what_is_known(
    admission_clock: VirtualClock,
) -> None:
    async with served(admission_clock) as api:
        queue = await api.get("/status/no-such-queue")
        cls = await api.get("/classes/no-such-class")
    assert queue.status_code == 404
    assert queue.json() == {
        "detail": f"no queue named 'no-such-queue' (known: {NEW_FILE})",
    }
    assert cls.status_code == 404
    assert cls.json() == {
        "detail": "no class named 'no-such-class' (known: standard, expensive)",
    }


async def test_presets_lists_every_preset_with_its_thresholds(
    admission_clock: VirtualClock,
) -> None:
    async with served(admission_clock, preset="aggressive") as api:
        body = (await api.get("/presets")).json()
    assert (body["requested_preset"], body["active_preset"]) == ("aggressive", "aggressive")
    by_name = {p["name"]: p for p in body["presets"]}
    assert set(by_name) == {"conservative", "balanced", "aggressive"}
    new_file = by_name["conservative"]["queues"][NEW_FILE]
    assert (new_file["warning_threshold"], new_file["critical_threshold"]) == (20, 40)
    assert by_name["aggressive"]["classes"]["expensive"]["normal"]["parallelism"] == 2


async def test_transitions_are_the_latest_first_to_last_and_bounded_by_limit(
    admission_clock: VirtualClock,
) -> None:
    async with served(admission_clock) as api, api.pipeline.monitor:
        api.pipeline.source.set(NEW_FILE, 500)
        await api.pipeline.until(65)  # seen at 5 s, critical 60 s later
        everything = (await api.get("/transitions")).json()["transitions"]
        last = (await api.get("/transitions", params={"limit": 1})).json()["transitions"]
        bad = await api.get("/transitions", params={"limit": -1})
    queue_records = [t for t in everything if t["scope"] == "queue"]
    assert [(t["name"], t["from_level"], t["to_level"], t["reason"]) for t in queue_records] == [
        (NEW_FILE, "normal", "critical", "sustained_pressure")
    ]
    assert queue_records[0]["at"] == wall(65)
    assert (queue_records[0]["signal"], queue_records[0]["critical_threshold"]) == (500, 120)
    assert last == everything[-1:]
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "limit"]


async def test_what_if_answers_without_changing_anything(admission_clock: VirtualClock) -> None:
    async with served(admission_clock) as api, api.pipeline.monitor:
        before = await api.status()
        rate = api.pipeline.expensive_rate()
        held = await api.post(
            "/evaluate",
            json={"samples": [{"queue": NEW_FILE, "messages_ready": 500}], "hold_seconds": 60},
        )
        now = await api.post(
            "/evaluate", json={"samples": [{"queue": NEW_FILE, "messages_ready": 500}]}
        )
        after = await api.status()
        assert api.pipeline.expensive_rate() == rate  # nothing was retuned
        transitions = (await api.get("/transitions")).json()["transitions"]
    assert transitions == []
    assert held.status_code == 200, held.text
    assert held.json()["queue_pressure_level"] == "critical"  # 60 s of 500 ready: balanced trips
    assert held.json()["policy_active"] is True
    first = now.json()["queue_states"][0]
    assert (first["severity"], first["pending_level"]) == ("normal", "critical")
    assert first["window"]["remaining_seconds"] == 60
    assert after["queue_states"] == before["queue_states"]
    assert after["class_states"] == before["class_states"]


async def test_what_if_under_another_preset_shows_that_presets_thresholds(
    admission_clock: VirtualClock,
) -> None:
    async with served(admission_clock) as api:
        response = await api.post(
            "/evaluate",
            json={
                "preset": "conservative",
                "samples": [{"queue": NEW_FILE, "messages_ready": 45}],
                "hold_seconds": 45,
            },
        )
    body = response.json()
    queue = body["queue_states"][0]
    assert (queue["warning_threshold"], queue["critical_threshold"]) == (20, 40)
    assert queue["severity"] == "critical"  # conservative: 45 s sustained at >= 40
    assert body["class_states"][1]["preset"] == "conservative"


async def test_what_if_of_an_outage_shows_fail_safe(admission_clock: VirtualClock) -> None:
    async with served(admission_clock) as api:
        response = await api.post(
            "/evaluate",
            json={"samples": [{"queue": NEW_FILE, "failure": "broker down"}], "hold_seconds": 10},
        )
    body = response.json()
    assert (body["fail_safe"], body["active_preset"]) == (True, "conservative")
    assert body["queue_states"][0]["telemetry"]["consecutive_failures"] == 3
    assert body["queue_states"][0]["telemetry"]["last_error"] == "source_error: broker down"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"preset": "nope"}, "preset='nope' is not a known preset"),
        (
            {"samples": [{"queue": "elsewhere", "messages_ready": 1}]},
            "samples[0].queue='elsewhere'",
        ),
    ],
)
async def test_what_if_refuses_unknown_names_with_a_422(
    admission_clock: VirtualClock, body: dict[str, object], message: str
) -> None:
    async with served(admission_clock) as api:
        response = await api.post("/evaluate", json=body)
    assert response.status_code == 422
    assert message in response.json()["detail"]


@pytest.mark.parametrize(
    ("sample", "field"),
    [
        ({"queue": NEW_FILE, "messages_ready": -1}, "messages_ready"),
        ({"queue": NEW_FILE, "messages_ready": 1, "publish_rate": "fast"}, "publish_rate"),
        ({"queue": NEW_FILE, "messages_ready": 1, "shoe_size": 44}, "shoe_size"),
    ],
)
async def test_a_bad_sample_is_a_422_naming_the_field(
    admission_clock: VirtualClock, sample: dict[str, object], field: str
) -> None:
    async with served(admission_clock) as api:
        response = await api.post("/evaluate", json={"samples": [sample]})
    assert response.status_code == 422
    (issue,) = response.json()["detail"]
    assert issue["loc"][-1] == field


async def test_a_sample_without_a_reading_says_so(admission_clock: VirtualClock) -> None:
    async with served(admission_clock) as api:
        response = await api.post("/evaluate", json={"samples": [{"queue": NEW_FILE}]})
    assert response.status_code == 422
    assert "give messages_ready, or a failure reason" in response.json()["detail"][0]["msg"]


async def test_metrics_are_prometheus_text(admission_clock: VirtualClock) -> None:
    async with served(admission_clock) as api, api.pipeline.monitor:
        api.pipeline.source.set(NEW_FILE, 500)
        await api.pipeline.until(65)
        response = await api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert f'admission_queue_level{{queue="{NEW_FILE}"}} 2.0' in response.text
