"""The measuring half of :mod:`bench.load`: the governed registry, its server, the phases.

Everything runs in one event loop: uvicorn serving ``throughput_router``, the
admitting tasks and a 1 ms heartbeat that measures how late the loop runs.  The
HTTP clients are ``bench/_http_load.py`` in a process of their own.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Scope

from admission import AdaptiveLimiter, WorkloadClass
from admission.clock import SystemClock
from admission.policy import QueueSample, parse_config
from admission.registry import Registry
from bench._common import cancel_all, collect, median, progress, rotated

__all__ = [
    "BURSTS",
    "NONE",
    "PACED",
    "QUEUES",
    "TIGHT",
    "UNPACED",
    "Costs",
    "Outcome",
    "Phase",
    "measure",
]

CLIENT = Path(__file__).resolve().with_name("_http_load.py")
HOST = "127.0.0.1"
#: The admission workloads: none (the HTTP work alone), the paced limiter with a
#: burst of 0.1 s or of 0.01 s of its rate, and a limiter that never limits.
NONE = "none"
PACED = "paced"
TIGHT = "paced, tight burst"
UNPACED = "unpaced"
#: Seconds of the paced limiter's rate its burst holds, per workload.
BURSTS = {PACED: 0.1, TIGHT: 0.01}
#: queue -> ready messages: calm ones, one past its warning threshold, one near it.
QUEUES = {
    "files-new_file": 12,
    "files-document_conversion_input": 45,
    "titus-titus_input": 25,
    "files-archive_input": 3,
}
_OPEN = {"parallelism": 100_000, "rate": 1e9, "burst": 1e9}
# The preset's standard limits are a few admissions per second: open them, so the
# limiter's own rate is what paces (expensive keeps the preset's limits).
_PRESET = {
    "extends": "balanced",
    "classes": {"standard": {"normal": _OPEN, "warning": _OPEN, "critical": _OPEN}},
}
#: After the window the client runs this much longer, so the whole window is under load.
_TAIL = 0.2


@dataclass(frozen=True)
class Phase:
    workload: str  # NONE, PACED, TIGHT or UNPACED
    clients: int  # 0: no HTTP load
    interval: float = 0.0  # 0: back-to-back

    def load(self) -> str:
        if not self.clients:
            return "none"
        every = "back-to-back" if self.interval == 0 else f"every {self.interval:g} s"
        return f"{self.clients} clients, {every}"


@dataclass
class Outcome:
    admissions: float  # per second of the window
    cpu: float  # server process CPU seconds per second of the window
    lag_p99: float  # seconds the 1 ms heartbeat woke late, 99th percentile
    http: dict[str, Any] = field(default_factory=dict)  # the client's results


def _governed(rate: float) -> tuple[Registry, dict[str, AdaptiveLimiter]]:
    config = parse_config(
        {
            "preset": "bench",
            "presets": {"bench": _PRESET},
            "queues": [{"name": name} for name in QUEUES],
        }
    )
    clock = SystemClock()
    registry = Registry(config, clock=clock)
    classes = [WorkloadClass("standard"), WorkloadClass("expensive")]
    ingest = AdaptiveLimiter("ingest", rate=rate, burst=rate, classes=classes, clock=clock)
    convert = AdaptiveLimiter("convert", rate=1e9, burst=1e9, classes=classes, clock=clock)
    for limiter in (ingest, convert):
        registry.add_limiter(limiter)
    registry.watch(QUEUES)
    now = clock.monotonic()
    registry.observe(
        {
            q: QueueSample(q, now, ready, messages_unacknowledged=4, consumers=3)
            for q, ready in QUEUES.items()
        }
    )
    return registry, {PACED: ingest, TIGHT: ingest, UNPACED: convert}


def _paths(prefix: str) -> list[str]:
    first, second = list(QUEUES)[:2]
    routes = ["/status", f"/status/{first}", "/classes/standard"]
    routes += ["/status", f"/status/{second}", "/classes/expensive"]
    return [prefix + route for route in routes]


def _app(registry: Registry) -> tuple[ASGIApp, str]:
    """The router at its documented prefix on a bare FastAPI app; (app, prefix)."""
    from fastapi import FastAPI

    from integrations.web_api import DEFAULT_PREFIX, throughput_router

    app = FastAPI()
    app.include_router(throughput_router(registry), prefix=DEFAULT_PREFIX)
    return app, DEFAULT_PREFIX


async def _asgi_cost(app: ASGIApp, paths: list[str], rounds: int) -> float:
    """CPU seconds per request of the ASGI app called directly: no socket, no HTTP parsing.

    CPU, not wall time: on a shared machine the process may wait for a core.
    """

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"{message['status']} from the status API")

    def scope(path: str) -> Scope:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", HOST.encode()), (b"accept", b"application/json")],
            "client": (HOST, 1),
            "server": (HOST, 80),
        }

    scopes = [scope(path) for path in paths]
    spans = []
    for _ in range(rounds):
        begin = time.process_time()
        for each in scopes:
            await app(each, receive, send)
        spans.append((time.process_time() - begin) / len(scopes))
    return median(spans)


@asynccontextmanager
async def _serving(app: ASGIApp) -> AsyncIterator[int]:
    """uvicorn serving ``app`` on a free loopback port, in this loop; yields the port."""
    import uvicorn

    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say
    # they are TCP, and without it each answer (head and body written apart) waits
    # out the client's delayed ACK, about 40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind((HOST, 0))
    sock.listen(1024)
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, access_log=False, timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve([sock]))
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass(frozen=True)
class _Bench:
    """What every phase of a run shares."""

    limiters: dict[str, AdaptiveLimiter]
    port: int
    paths: list[str]
    workers: int
    warmup: float
    seconds: float
    max_requests: int
    #: Admissions so far in the running phase (a box the admitting tasks share).
    admitted: list[int] = field(default_factory=lambda: [0])

    def client(self, phase: Phase) -> list[str]:
        duration = self.warmup + self.seconds + _TAIL
        return [
            *(sys.executable, str(CLIENT), str(self.port), str(phase.clients), str(duration)),
            *(str(self.max_requests), str(phase.interval), *self.paths),
        ]

    def admitting(self, workload: str) -> list[asyncio.Task[None]]:
        """The workload's admitting tasks, started (they run until cancelled)."""
        if workload == NONE:
            return []
        limiter = self.limiters[workload]
        if workload in BURSTS:
            limiter.retune(burst=limiter.rate * BURSTS[workload])
        admit = limiter.admit

        async def paced() -> None:
            while True:  # the limiter paces
                async with admit(workload_class="standard"):
                    pass
                self.admitted[0] += 1

        async def unpaced() -> None:
            while True:
                for _ in range(50):
                    async with admit(workload_class="standard"):
                        pass
                self.admitted[0] += 50
                await asyncio.sleep(0)

        body = unpaced if workload == UNPACED else paced
        return [asyncio.create_task(body()) for _ in range(self.workers)]

    async def phase(self, phase: Phase) -> Outcome:
        """Admit (and serve ``phase``'s load) for warm-up + window; the window's figures."""
        lags: list[float] = []
        perf = time.perf_counter

        async def heartbeat() -> None:
            while True:
                begin = perf()
                await asyncio.sleep(0.001)
                lags.append(perf() - begin - 0.001)

        collect()
        self.admitted[0] = 0
        tasks = [*self.admitting(phase.workload), asyncio.create_task(heartbeat())]
        client: asyncio.subprocess.Process | None = None
        try:
            if phase.clients:
                client = await asyncio.create_subprocess_exec(
                    *self.client(phase), stdout=asyncio.subprocess.PIPE
                )
                assert client.stdout is not None
                ready = await asyncio.wait_for(client.stdout.readline(), 30)
                if ready.strip() != b"ready":
                    raise RuntimeError(f"the load client did not start: {ready!r}")
            await asyncio.sleep(self.warmup)
            lags.clear()
            count, begin, cpu = self.admitted[0], perf(), time.process_time()
            await asyncio.sleep(self.seconds)
            span = perf() - begin
            outcome = Outcome(
                (self.admitted[0] - count) / span, (time.process_time() - cpu) / span, _p99(lags)
            )
            if client is not None:
                assert client.stdout is not None
                limit = self.warmup + self.seconds + 30
                outcome.http = json.loads(await asyncio.wait_for(client.stdout.readline(), limit))
            return outcome
        finally:
            await cancel_all(tasks)
            if client is not None:
                await _reap(client)


async def _reap(client: asyncio.subprocess.Process) -> None:
    """Wait for the client to exit (killed if it does not within 10 s).

    Only once the admitting tasks are gone: asyncio learns of the exit from a
    watcher thread, which a loop busy with unpaced admissions keeps waiting for
    the GIL, for seconds.
    """
    try:
        await asyncio.wait_for(client.wait(), 10)
    except TimeoutError:
        client.kill()
        await client.wait()


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


@dataclass(frozen=True)
class Costs:
    """CPU per request of the parts, measured after the run (every wait window full)."""

    status: float  # registry.status(), CPU seconds
    asgi: float  # the whole ASGI app called directly (status included), CPU seconds


async def measure(
    phases: list[Phase],
    *,
    rate: float,
    workers: int,
    warmup: float,
    seconds: float,
    repeats: int,
    max_requests: int,
) -> tuple[dict[Phase, list[Outcome]], Costs]:
    """Each phase's outcomes (``repeats`` of them, in rotated order) and the parts' costs."""
    registry, limiters = _governed(rate)
    app, prefix = _app(registry)
    paths = _paths(prefix)
    outcomes: dict[Phase, list[Outcome]] = {phase: [] for phase in phases}
    async with _serving(app) as port:
        bench = _Bench(limiters, port, paths, workers, warmup, seconds, max_requests)
        # Unrecorded: the first requests pay for route set-up and first-use costs.
        await bench.phase(Phase(PACED, max(p.clients for p in phases)))
        for r in range(repeats):
            progress(f"load: repeat {r + 1}/{repeats}")
            for phase in rotated(phases, r):
                outcome = await bench.phase(phase)
                outcomes[phase].append(outcome)
                if outcome.http.get("failures"):
                    progress(f"load: {phase.load()}: {outcome.http['first_failure']}")
    spans = []
    for _ in range(200):
        begin = time.process_time()
        registry.status()
        spans.append(time.process_time() - begin)
    return outcomes, Costs(median(spans), await _asgi_cost(app, paths, 40))
