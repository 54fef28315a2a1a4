"""Prometheus exposition of a registry, read at scrape time."""

from __future__ import annotations

import pytest
from monitor_helpers import NEW_FILE, pipeline
from prometheus_client.parser import text_string_to_metric_families

from admission.metrics import AdmissionCollector, render_metrics
from admission.testing import VirtualClock

pytestmark = pytest.mark.anyio


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_queues_classes_and_counters_are_exposed(admission_clock: VirtualClock) -> None:
    p = pipeline(admission_clock)
    async with p.monitor:
        p.source.set(NEW_FILE, 150)
        await p.until(65)
        async with p.limiter.admit(workload_class="expensive"):
            pass
        p.registry.record_deferred("expensive", 2)
        got = samples(render_metrics(p.registry))
    q = (("queue", NEW_FILE),)
    assert got[("admission_queue_level", q)] == 2
    assert (
        got[("admission_queue_signal", (("queue", NEW_FILE), ("signal", "messages_ready")))] == 150
    )
    assert got[("admission_queue_telemetry_health", (("health", "ok"), ("queue", NEW_FILE)))] == 1
    assert (
        got[("admission_queue_telemetry_health", (("health", "stale"), ("queue", NEW_FILE)))] == 0
    )
    e = (("class", "expensive"),)
    assert got[("admission_class_rate", e)] == 0.5
    assert got[("admission_class_parallelism", e)] == 1
    assert got[("admission_class_level", e)] == 2
    assert got[("admission_deferred_total", e)] == 2
    lim = (("limiter", "file_enrichment"), ("workload_class", "expensive"))
    assert got[("admission_admitted_total", lim)] == 1
    assert got[("admission_timed_out_total", lim)] == 0
    moved = (("reason", "sustained_pressure"), ("scope", "queue"))
    assert got[("admission_transitions_total", moved)] == 1
    assert got[("admission_fail_safe", ())] == 0


async def test_fail_safe_shows_in_the_metrics(admission_clock: VirtualClock) -> None:
    p = pipeline(admission_clock)
    async with p.monitor:
        pass
    got = samples(render_metrics(p.registry))
    assert got[("admission_fail_safe", ())] == 1
    assert got[("admission_class_level", (("class", "standard"),))] == 3


def test_a_collector_registers_with_prometheus(admission_clock: VirtualClock) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    p = pipeline(admission_clock)
    registry = CollectorRegistry()
    registry.register(AdmissionCollector(p.registry, prefix="pipeline"))
    assert b"pipeline_class_rate" in generate_latest(registry)
