"""The HTTP load of :mod:`bench.load`, run in a process of its own.

``python bench/_http_load.py PORT CLIENTS SECONDS MAX_REQUESTS INTERVAL PATH...``:
CLIENTS keep-alive connections to 127.0.0.1:PORT (no other host is possible),
each sending GET requests one at a time, cycling through the paths, for
SECONDS or MAX_REQUESTS requests per client, whichever ends first.  INTERVAL 0
sends each request as soon as the previous answer is in (a flood); above 0,
each client starts a request every INTERVAL seconds (a poller).  Prints
``ready`` once every connection is open, then one JSON line of results.

A bare HTTP/1.1 client on asyncio streams, standard library only: it shares a
2-core machine with the server, so it must cost much less per request than the
server does (httpx's client costs about as much as the server's whole request).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

HOST = "127.0.0.1"
#: One read may not take longer than this: a stuck server ends the run, never hangs it.
READ_TIMEOUT = 10.0


class Failed(Exception):
    """An answer that is not a 200."""


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """Send one request and read its whole answer; the body's length."""
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await asyncio.wait_for(reader.readexactly(length), READ_TIMEOUT)
    if head[9:12] != b"200":
        raise Failed(f"{head[9:12].decode()} {body[:200]!r}")
    return length


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


async def run(
    port: int, clients: int, seconds: float, max_requests: int, interval: float, paths: list[str]
) -> dict[str, object]:
    requests = [
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: application/json\r\n\r\n".encode()
        for path in paths
    ]
    connections = [await asyncio.open_connection(HOST, port) for _ in range(clients)]
    print("ready", flush=True)
    latencies: list[float] = []
    failures: list[str] = []
    received = 0
    cpu = time.process_time()
    started = time.perf_counter()
    deadline = started + seconds

    async def client(number: int) -> None:
        nonlocal received
        reader, writer = connections[number]
        perf = time.perf_counter
        # Pollers start spread over one interval, as independent dashboards would.
        next_at = started + interval * number / clients
        sent = 0
        while sent < max_requests:
            if interval > 0:
                await asyncio.sleep(max(0.0, next_at - perf()))
                next_at += interval
            begin = perf()
            if begin >= deadline:
                return
            request = requests[(number + sent) % len(requests)]
            sent += 1
            try:
                length = await _get(reader, writer, request)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, Failed) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                return  # the connection is in an unknown state: this client stops
            latencies.append(perf() - begin)
            received += length

    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    for _, writer in connections:
        writer.close()
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "bytes": received,
        "p50": percentile(ordered, 0.50) if ordered else None,
        "p99": percentile(ordered, 0.99) if ordered else None,
        "max": ordered[-1] if ordered else None,
    }


def main(argv: list[str]) -> int:
    port, clients, seconds = int(argv[0]), int(argv[1]), float(argv[2])
    max_requests, interval, paths = int(argv[3]), float(argv[4]), argv[5:]
    print(json.dumps(asyncio.run(run(port, clients, seconds, max_requests, interval, paths))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
