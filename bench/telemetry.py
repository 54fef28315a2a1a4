"""Benchmark 7: one telemetry tick against a real RabbitMQ, one request per queue versus one list.

``RabbitMQManagementSource.read()`` of N queues (N = 1 .. 50) in ``per_queue``
mode (N concurrent ``GET /api/queues/%2F/{queue}``) and in ``list`` mode (one
``GET /api/queues/%2F``), both with ``columns=``, each source keeping its HTTP
client (keep-alive) as a monitor does.  The modes alternate tick by tick, after
warm-up ticks; the figure is the median wall time of a tick (client CPU beside
it).  List mode as shipped (the broker filters the list by a name regex for
up to ``FILTER_MAX_QUEUES`` queues) and the whole list (filtered here) are each
timed with only the 50 benchmark queues in the vhost, and with ``background``
more in it: a list's cost grows with the broker's queues, not only with N.

The crossover (the smallest N from which list mode is at least as fast for
every larger N measured) is what ``AUTO_CROSSOVER`` in
``admission/telemetry/rabbitmq.py`` is set from.  Queues are declared with a
unique prefix, given one message each (so their stats carry every field read),
and deleted at the end.  Without a broker on 127.0.0.1 the section says so.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from admission.telemetry.base import QueueSample
from bench._common import Check, Row, Section, median, progress, rotated

if TYPE_CHECKING:
    from aio_pika.abc import AbstractConnection

    from admission.telemetry.rabbitmq import RabbitMQManagementSource

__all__ = ["run"]

URL = "http://127.0.0.1:15672"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
TITLE = "7. Telemetry: a RabbitMQ management tick, per-queue requests versus one list"


class _Unavailable(Exception):
    pass


def run(
    sizes: Sequence[int] = (1, 2, 3, 5, 10, 20, 50),
    ticks: int = 15,
    warmup: int = 3,
    background: int = 200,
    settle: float = 15.0,
) -> Section:
    try:
        # The rabbitmq extra (httpx, aio-pika) is needed here only.
        from admission.telemetry.rabbitmq import AUTO_CROSSOVER
    except ImportError as exc:
        return _skipped(f"the rabbitmq extra is not installed ({exc})")
    try:
        medians, notes = asyncio.run(_measure(sizes, ticks, warmup, background, settle))
    except _Unavailable as exc:
        return _skipped(str(exc))
    more = f"+{background}"
    columns = {
        "per_queue ms": "per_queue",
        "list ms": "list",
        f"list {more} ms": f"list {more}",
        "whole list ms": "whole list",
        f"whole list {more} ms": f"whole list {more}",
        "per_queue CPU ms": "per_queue cpu",
        "list CPU ms": "list cpu",
    }
    rows: list[Row] = [
        {"N": n, **{column: medians[n][key] * 1e3 for column, key in columns.items()}}
        for n in sizes
    ]
    first, last = medians[sizes[0]], medians[sizes[-1]]
    checks = [
        Check(f"N={sizes[0]}: per_queue / list (wall)", first["per_queue"] / first["list"]),
        Check(f"N={sizes[-1]}: per_queue / list (wall)", last["per_queue"] / last["list"]),
        Check(
            f"N={sizes[-1]}: list {more} / whole list {more} (wall)",
            last[f"list {more}"] / last[f"whole list {more}"],
        ),
    ]
    for label, mode in (
        ("only the benchmark queues", "list"),
        (f"{background} more queues", f"list {more}"),
        (f"{background} more queues, whole list", f"whole list {more}"),
    ):
        n = _crossover(medians, sizes, mode)
        said = f"N = {n}" if n is not None else "never (per_queue faster at every N measured)"
        notes.append(f"Crossover, vhost holding {label}: list mode is as fast from {said}.")
    notes.append(
        f"AUTO_CROSSOVER (admission/telemetry/rabbitmq.py) is {AUTO_CROSSOVER}: auto mode reads "
        f"up to {AUTO_CROSSOVER} queue(s) with one request each, more with one list."
    )
    return Section(
        key="telemetry",
        title=TITLE,
        method=(
            f"RabbitMQManagementSource.read() of N queues on the local broker ({URL}), "
            f"{ticks} timed ticks per mode and size after {warmup} warm-up ticks, modes "
            "alternating tick by tick, one source (one keep-alive HTTP client) per mode; "
            "wall time by time.perf_counter (median), client CPU by time.process_time.  "
            "'list' is list mode as shipped (the broker filters by a name regex up to "
            "FILTER_MAX_QUEUES queues); 'whole list' always takes every queue of the vhost "
            f"and picks (server_filter_limit=0).  '{more}': with "
            f"{background} unrelated queues added to the vhost."
        ),
        params={"sizes": ",".join(map(str, sizes)), "ticks": ticks, "background": background},
        columns=("N", *columns),
        rows=rows,
        checks=checks,
        notes=notes,
        formats=dict.fromkeys(columns, ".2f"),
    )


def _crossover(medians: dict[int, dict[str, float]], sizes: Sequence[int], mode: str) -> int | None:
    """The smallest N from which ``mode`` is as fast as per_queue for every larger N."""
    faster = [medians[n][mode] <= medians[n]["per_queue"] for n in sizes]
    return next((sizes[i] for i in range(len(sizes)) if all(faster[i:])), None)


async def _measure(
    sizes: Sequence[int], ticks: int, warmup: int, background: int, settle: float
) -> tuple[dict[int, dict[str, float]], list[str]]:
    import aio_pika

    from admission.telemetry.rabbitmq import RabbitMQManagementSource

    try:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
    except Exception as exc:
        raise _Unavailable(f"RabbitMQ not reachable at {AMQP_URL}: {exc}") from None
    prefix = f"bench-telemetry-{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}-{i:03d}" for i in range(max(sizes))]
    extra = [f"{prefix}-bg-{i:03d}" for i in range(background)]
    sources = {
        "per_queue": RabbitMQManagementSource(URL, password="guest", mode="per_queue"),
        "list": RabbitMQManagementSource(URL, password="guest", mode="list"),
        "whole list": RabbitMQManagementSource(URL, password="guest", mode="list"),
    }
    sources["whole list"].server_filter_limit = 0
    medians: dict[int, dict[str, float]] = {n: {} for n in sizes}
    notes: list[str] = []
    try:
        channel = await connection.channel()
        progress(f"declaring {len(names) + len(extra)} queues ...")
        for name in names + extra:
            await channel.declare_queue(name, auto_delete=False)
            await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key=name)
        waited = await _settle(sources["whole list"], names + extra, settle)
        notes.append(f"The broker reported the new queues' stats after {waited:.1f} s.")
        progress(f"timing list ticks with {background} more queues ...")
        for n in sizes:
            spans = await _ticks(sources, names[:n], ("list", "whole list"), ticks, warmup)
            for mode, (wall, _) in spans.items():
                medians[n][f"{mode} +{background}"] = median(wall)
        while extra:
            await channel.queue_delete(extra.pop())
        progress("timing ticks ...")
        for n in sizes:
            modes = ("per_queue", "list", "whole list")
            for mode, (wall, cpu) in (
                await _ticks(sources, names[:n], modes, ticks, warmup)
            ).items():
                medians[n][mode] = median(wall)
                medians[n][f"{mode} cpu"] = median(cpu)
    finally:
        for source in sources.values():
            await source.aclose()
        await _delete(connection, names + extra)
    return medians, notes


async def _ticks(
    sources: dict[str, RabbitMQManagementSource],
    names: list[str],
    modes: Sequence[str],
    ticks: int,
    warmup: int,
) -> dict[str, tuple[list[float], list[float]]]:
    spans: dict[str, tuple[list[float], list[float]]] = {mode: ([], []) for mode in modes}
    for k in range(warmup + ticks):
        for mode in rotated(modes, k):
            wall, cpu = time.perf_counter(), time.process_time()
            await sources[mode].read(names, now=float(k))
            if k >= warmup:
                spans[mode][0].append(time.perf_counter() - wall)
                spans[mode][1].append(time.process_time() - cpu)
    return spans


async def _settle(source: RabbitMQManagementSource, names: list[str], limit: float) -> float:
    """Wait (bounded) until the broker reports stats for every queue; the seconds waited."""
    start = time.perf_counter()
    while True:
        readings = await source.read(names, now=0.0)
        ready = all(isinstance(r, QueueSample) and r.messages_ready == 1 for r in readings.values())
        waited = time.perf_counter() - start
        if ready or waited >= limit:
            return waited
        await asyncio.sleep(0.25)


async def _delete(connection: AbstractConnection, names: list[str]) -> None:
    try:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
    finally:
        await connection.close()


def _skipped(reason: str) -> Section:
    return Section(
        key="telemetry",
        title=TITLE,
        method="Needs a RabbitMQ with the management plugin on 127.0.0.1.",
        params={},
        columns=("N", "per_queue ms", "list ms"),
        rows=[{"N": "skipped", "per_queue ms": None, "list ms": None}],
        checks=[],
        notes=[f"Not measured: {reason}"],
    )
