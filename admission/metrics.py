"""Prometheus metrics of a registry (the ``metrics`` extra).

A collector reads the registry when scraped, so nothing is counted on the
admission hot path: the figures come from the status snapshot and from the
limiters' own counters.

    from prometheus_client import REGISTRY
    REGISTRY.register(AdmissionCollector(registry))
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from admission.registry import Registry, default_registry

__all__ = ["AdmissionCollector", "render_metrics"]

_LEVEL = {"normal": 0, "warning": 1, "critical": 2, "fail_safe": 3}
_HEALTH = ("ok", "degraded", "stale", "failing")


class AdmissionCollector(Collector):
    """Exposes one registry's queues, classes and counters to Prometheus."""

    def __init__(self, registry: Registry | None = None, *, prefix: str = "admission") -> None:
        self._registry = registry
        self._prefix = prefix

    def collect(self) -> Iterator[Metric]:
        registry = self._registry if self._registry is not None else default_registry()
        status = registry.status()
        p = self._prefix

        level = GaugeMetricFamily(
            f"{p}_queue_level",
            "Queue level: 0 normal, 1 warning, 2 critical, 3 fail-safe",
            labels=["queue"],
        )
        signal = GaugeMetricFamily(
            f"{p}_queue_signal", "The queue's pressure signal value", labels=["queue", "signal"]
        )
        health = GaugeMetricFamily(
            f"{p}_queue_telemetry_health",
            "1 for the queue's current telemetry health",
            labels=["queue", "health"],
        )
        for q in status.queue_states:
            level.add_metric([q.queue], _LEVEL[q.severity])
            if q.signal_value is not None:
                signal.add_metric([q.queue, q.signal], q.signal_value)
            for name in _HEALTH:
                health.add_metric([q.queue, name], 1.0 if q.telemetry.health == name else 0.0)
        yield from (level, signal, health)

        gauges = {
            "level": ("Class level: 0 normal, 1 warning, 2 critical, 3 fail-safe", "level"),
            "rate": ("Effective rate (admissions per second)", "rate"),
            "burst": ("Effective burst", "burst"),
            "parallelism": ("Effective parallelism", "active_parallelism"),
            "in_flight": ("Admissions in flight", "in_flight"),
            "waiting": ("Admissions waiting", "waiting"),
        }
        families = {
            key: GaugeMetricFamily(f"{p}_class_{key}", text, labels=["class"])
            for key, (text, _) in gauges.items()
        }
        deferred = CounterMetricFamily(
            f"{p}_deferred", "Admissions deferred (handed back for redelivery)", labels=["class"]
        )
        admitted = CounterMetricFamily(
            f"{p}_admitted", "Admissions granted", labels=["limiter", "workload_class"]
        )
        rejected = CounterMetricFamily(
            f"{p}_rejected", "try_acquire calls refused", labels=["limiter", "workload_class"]
        )
        timed_out = CounterMetricFamily(
            f"{p}_timed_out", "Waiters out of time", labels=["limiter", "workload_class"]
        )
        for c in status.class_states:
            for key, (_, attr) in gauges.items():
                value = getattr(c, attr)
                families[key].add_metric([c.class_name], _LEVEL[value] if key == "level" else value)
            deferred.add_metric([c.class_name], c.deferred_total)
            for lim in c.limiters:
                labels = [lim.limiter, lim.workload_class or ""]
                admitted.add_metric(labels, lim.admitted_total)
                rejected.add_metric(labels, lim.rejected_total)
                timed_out.add_metric(labels, lim.timed_out_total)
        yield from families.values()
        yield from (deferred, admitted, rejected, timed_out)

        transitions = CounterMetricFamily(
            f"{p}_transitions", "Level transitions recorded", labels=["scope", "reason"]
        )
        for (scope, reason), count in sorted(registry.transitions_total.items()):
            transitions.add_metric([scope, reason], count)
        yield transitions
        fail_safe = GaugeMetricFamily(f"{p}_fail_safe", "1 while any part is in fail-safe")
        fail_safe.add_metric([], 1.0 if status.fail_safe else 0.0)
        yield fail_safe


def render_metrics(registry: Registry | None = None) -> bytes:
    """The Prometheus text exposition of ``registry`` (for a ``/metrics`` route)."""
    exposition = CollectorRegistry(auto_describe=False)
    exposition.register(AdmissionCollector(registry))
    return generate_latest(exposition)
