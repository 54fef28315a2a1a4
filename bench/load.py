"""Benchmark: the status API under HTTP load, beside a limiter admitting at a high rate.

One process, one event loop: a :class:`Registry` with four observed queues and
two limiters with the ``standard`` and ``expensive`` classes, served by
``throughput_router`` (at ``DEFAULT_PREFIX``) on a real uvicorn on 127.0.0.1,
while W tasks admit through one of the limiters.  The HTTP clients run in a
process of their own (``bench/_http_load.py``), so the server's loop does the
server's work only; each client holds one keep-alive connection and sends one
request at a time, cycling ``/status``, ``/status/{queue}``, ``/classes/{name}``,
either back-to-back (a flood) or one every P seconds (pollers).

The admission workloads, each measured with no HTTP load and under load:

- paced: the limiter's rate R is the bottleneck, as in production, with a burst
  of 0.1 s of R (the presets' burst is a whole second of their rate).  "Admissions
  lose < 10 %" means the limiter still delivers its configured rate while the API
  is hammered: admissions/s over the same window, with / without, >= 0.9;
- paced, tight burst: the same with a burst of 0.01 s of R, to show what a loop
  stall longer than the burst costs (reported, no target);
- unpaced: a limiter that never limits, so admissions are CPU-bound and the
  ratio is the share of the loop the API takes (reported, no target);
- none: the HTTP work alone, for the server's CPU per request.

Each phase counts admissions over a window of S seconds while the load runs
(after a warm-up), with a 1 ms heartbeat measuring how late the loop runs.
Phases rotate each repeat; figures are medians of the repeats (max ms: the
worst).  Every request loop stops after its time or a request cap, whichever
comes first, and talks only to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import structlog

from bench._common import Cell, Check, Row, Section, median
from bench._load_measure import (
    BURSTS,
    HOST,
    NONE,
    PACED,
    QUEUES,
    TIGHT,
    UNPACED,
    Costs,
    Outcome,
    Phase,
    measure,
)

__all__ = ["run"]


def run(
    *,
    clients: Sequence[int] = (10, 50, 100),
    pollers: int = 100,
    poll_interval: float = 0.1,
    rate: float = 10_000.0,
    workers: int = 16,
    warmup: float = 0.5,
    seconds: float = 3.0,
    repeats: int = 3,
    max_requests: int = 100_000,
) -> Section:
    top = max(clients)
    polled = [Phase(PACED, pollers, poll_interval)] if pollers else []
    phases = [Phase(PACED, 0), *(Phase(PACED, n) for n in clients), *polled]
    phases += [Phase(TIGHT, 0), Phase(TIGHT, top)]
    phases += [Phase(UNPACED, 0), Phase(UNPACED, top)]
    phases += [Phase(UNPACED, pollers, poll_interval)] if pollers else []
    phases.append(Phase(NONE, top))
    saved = structlog.get_config()
    # A benchmark measures, it does not log: the library's events would cost CPU here.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    try:
        outcomes, costs = asyncio.run(
            measure(
                phases,
                rate=rate,
                workers=workers,
                warmup=warmup,
                seconds=seconds,
                repeats=repeats,
                max_requests=max_requests,
            )
        )
    finally:
        structlog.configure(**saved)
    params: dict[str, Cell] = {
        "clients": ", ".join(map(str, clients)),
        "pollers": pollers,
        "poll_interval": poll_interval,
        "rate": rate,
        "burst": rate * BURSTS[PACED],
        "tight_burst": rate * BURSTS[TIGHT],
        "workers": workers,
        "warmup": warmup,
        "seconds": seconds,
        "repeats": repeats,
        "max_requests": max_requests,
    }
    return _section(outcomes, costs, rate=rate, top=top, params=params)


def _label(workload: str, rate: float) -> str:
    if workload in BURSTS:
        return f"paced {rate:,.0f}/s, burst {rate * BURSTS[workload]:,.0f}"
    return workload


def _http(outcomes: list[Outcome], key: str) -> list[float]:
    return [float(o.http[key]) for o in outcomes if o.http.get(key) is not None]


def _row(phase: Phase, outcomes: list[Outcome], base: list[Outcome] | None, rate: float) -> Row:
    row: Row = {
        "admissions": _label(phase.workload, rate),
        "HTTP load": phase.load(),
        "requests": None,
        "requests/s": None,
        "p50 ms": None,
        "p99 ms": None,
        "max ms": None,
        "server CPU %": median([o.cpu for o in outcomes]) * 100,
        "loop lag p99 ms": median([o.lag_p99 for o in outcomes]) * 1e3,
        "admissions/s": None,
        "vs no load": None,
    }
    if base is not None:
        admissions = median([o.admissions for o in outcomes])
        row["admissions/s"] = admissions
        row["vs no load"] = admissions / median([o.admissions for o in base])
    if phase.clients:
        row["requests"] = round(median(_http(outcomes, "requests")))
        row["requests/s"] = median([o.http["requests"] / o.http["seconds"] for o in outcomes])
        row["p50 ms"] = median(_http(outcomes, "p50")) * 1e3
        row["p99 ms"] = median(_http(outcomes, "p99")) * 1e3
        row["max ms"] = max(_http(outcomes, "max"), default=0.0) * 1e3
    return row


def _number(row: Row, column: str) -> float:
    cell = row[column]
    assert isinstance(cell, float), (column, cell)
    return cell


def _section(
    outcomes: dict[Phase, list[Outcome]],
    costs: Costs,
    *,
    rate: float,
    top: int,
    params: dict[str, Cell],
) -> Section:
    rows = {
        p: _row(p, runs, outcomes.get(Phase(p.workload, 0)) if p.workload != NONE else None, rate)
        for p, runs in outcomes.items()
    }
    flood, tight = rows[Phase(PACED, top)], rows[Phase(TIGHT, top)]
    greedy, alone = rows[Phase(UNPACED, top)], rows[Phase(NONE, top)]
    # With no admissions the loop is the server's alone: its CPU is the HTTP work.
    per_request = _number(alone, "server CPU %") / 100 / _number(alone, "requests/s")
    checks = [
        Check(f"status p99 ms, {top} clients back-to-back", _number(flood, "p99 ms"), high=50.0),
        Check(
            f"paced admissions/s, {top} clients back-to-back / no load",
            _number(flood, "vs no load"),
            low=0.9,
        ),
        Check(
            f"status p99 ms, {top} clients back-to-back, no admissions (info)",
            _number(alone, "p99 ms"),
        ),
        Check(
            f"paced, tight burst: admissions/s, {top} clients back-to-back / no load (info)",
            _number(tight, "vs no load"),
        ),
        Check(
            f"unpaced admissions/s, {top} clients back-to-back / no load (info)",
            _number(greedy, "vs no load"),
        ),
    ]
    pollers, interval = params["pollers"], params["poll_interval"]
    if isinstance(pollers, int) and pollers and isinstance(interval, float):
        label = f"{pollers} clients every {interval:g} s"
        checks.append(
            Check(
                f"status p99 ms, {label} (info)",
                _number(rows[Phase(PACED, pollers, interval)], "p99 ms"),
            )
        )
        checks.append(
            Check(
                f"unpaced admissions/s, {label} / no load (info)",
                _number(rows[Phase(UNPACED, pollers, interval)], "vs no load"),
            )
        )
    checks.append(Check("server CPU us per request (info)", per_request * 1e6))
    checks.append(Check("ASGI app alone us per request (info)", costs.asgi * 1e6))
    checks.append(Check("registry.status() build us (info)", costs.status * 1e6))
    served = _number(flood, "requests/s")
    client_cpu = median(
        [o.http["cpu_seconds"] / o.http["seconds"] for o in outcomes[Phase(PACED, top)]]
    )
    failures = sum(int(o.http.get("failures", 0)) for runs in outcomes.values() for o in runs)
    stall = _number(flood, "loop lag p99 ms")
    notes = [
        f"{top} back-to-back clients keep about {top} requests queued on the one loop: at "
        f"{served:,.0f} requests/s each waits for the others, p50 ~ {top} / {served:,.0f} = "
        f"{top / served * 1e3:.1f} ms (measured {_number(flood, 'p50 ms'):.1f} ms). A p99 "
        f"under 50 ms at {top} clients needs the loop to serve well over {top / 0.05:,.0f} "
        "requests/s.",
        f"The server spends {per_request * 1e6:.0f} us of CPU per request (measured with no "
        f"admissions, at {_number(alone, 'server CPU %'):.0f} % of a core). Called directly, "
        f"the ASGI app takes {costs.asgi * 1e6:.0f} us over the route mix: a third of the "
        "requests get the whole status, which registry.status() builds in "
        f"{costs.status * 1e6:.0f} us; /status/{{queue}} and /classes/{{name}} build their "
        "one entry. The remaining "
        f"{(per_request - costs.asgi) * 1e6:.0f} us are uvicorn's protocol ({_parser()}), "
        "the sockets and the loop's scheduling.",
        f"Under {top} back-to-back clients the 1 ms heartbeat woke {stall:.1f} ms late at "
        "p99: one pass of the loop serves every queued request. A burst of "
        f"{BURSTS[PACED] * 1e3:.0f} ms of the rate banks what most such stalls accrue (the "
        f"limiter kept {_number(flood, 'vs no load'):.0%} of its rate); a burst of "
        f"{BURSTS[TIGHT] * 1e3:.0f} ms loses the rest of every longer stall (it kept "
        f"{_number(tight, 'vs no load'):.0%}).",
        "Unpaced admissions get one turn (50 admissions per task) per pass of the loop, as "
        f"each queued request gets one: {top} back-to-back clients left them "
        f"{_number(greedy, 'vs no load'):.0%} of their throughput.",
        f"The load client (a process of its own) used {client_cpu:.0%} of a core at {top} "
        "back-to-back clients.",
    ]
    squeezed = _number(alone, "server CPU %")
    if squeezed < 90:
        notes.append(
            f"With no admissions the server's loop used only {squeezed:.0f} % of a core under "
            f"{top} back-to-back clients: it waited, for the clients or for a CPU that other "
            "processes held (on an idle machine it runs near 100 %), and the latencies above "
            "include that wait."
        )
    if failures:
        notes.append(f"{failures} HTTP client(s) stopped on a failed request")
    method = (
        f"One process: uvicorn ({HOST}, a free port) serving throughput_router for a registry "
        f"of {len(QUEUES)} queues and 2 limiters with 2 classes each, in the loop where "
        f"{params['workers']} tasks admit (paced: rate {rate:,.0f}/s, burst "
        f"{rate * BURSTS[PACED]:,.0f} or {rate * BURSTS[TIGHT]:,.0f}; unpaced: a limiter "
        "that never limits; or none). HTTP clients in a separate process, one keep-alive "
        "connection each, cycling /status, /status/{queue}, /classes/{name}. Admissions "
        f"counted over a {params['seconds']} s window after {params['warmup']} s of load; "
        f"{params['repeats']} rotated repeats, medians (max ms: the worst)."
    )
    return Section(
        key="load",
        title="Status API under load beside admissions",
        method=method,
        params=params,
        columns=tuple(next(iter(rows.values()))),
        rows=list(rows.values()),
        checks=checks,
        notes=notes,
        formats={
            "requests/s": ",.0f",
            "p50 ms": ".2f",
            "p99 ms": ".2f",
            "max ms": ".2f",
            "server CPU %": ".0f",
            "loop lag p99 ms": ".2f",
            "admissions/s": ",.0f",
            "vs no load": ".3f",
        },
    )


def _parser() -> str:
    """The HTTP parser uvicorn picks here: httptools if installed, else pure-Python h11."""
    import importlib.util

    return "httptools" if importlib.util.find_spec("httptools") else "pure-Python h11"
