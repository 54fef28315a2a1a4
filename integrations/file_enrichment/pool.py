"""A policy-aware worker pool: the ``asyncio.Queue(maxsize=N)`` + N workers pattern, governed.

Items are put per workload class into a bounded lane.  One dispatcher per
class takes a permit from the limiter *before* taking the next item, then runs
the handler in a task the pool owns, so:

- the parallelism of each class is what the limiter admits now: when the
  registry retunes a class (or you call ``retune_class``), the pool follows at
  once, in both directions;
- a shrink cancels nothing: running work finishes, and the class starts new
  work only once it is under its new cap;
- a throttled class never blocks another: each lane has its own bound and its
  own dispatcher (``put`` waits only while the item's own lane is full).

``async with WorkerPool(...) as pool:`` owns the tasks.  Leaving the block
normally drains: every item put is processed before the block exits.  Leaving
it with an exception (or cancelled) cancels the running work, and every item
accepted but not finished is handed back in :attr:`WorkerPool.unfinished`
(e.g. to nack it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Generic, Self, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from admission import AdaptiveLimiter, Permit, events

__all__ = ["TASK_FAILED", "WorkerPool"]

T = TypeVar("T")

#: The structlog event for a handler that raised (when no ``on_error`` is given).
TASK_FAILED = "admission.file_enrichment.pool.task_failed"


class _Signal:
    """Wake every task waiting now (an ``anyio.Event`` renewed after each notify)."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = anyio.Event()

    async def wait(self) -> None:
        await self._event.wait()

    def notify(self) -> None:
        self._event.set()
        self._event = anyio.Event()


class _Lane(Generic[T]):
    """One workload class: its buffered items, its running ones, its wake-ups."""

    __slots__ = ("has_items", "has_space", "items", "name", "running")

    def __init__(self, name: str) -> None:
        self.name = name
        self.items: deque[T] = deque()
        self.running: dict[int, T] = {}
        self.has_items = _Signal()
        self.has_space = _Signal()


class WorkerPool(Generic[T]):
    """Runs ``handler(item)`` for each item put, admitted by ``limiter`` per workload class.

    - ``classify``: ``item -> class name`` (default: the limiter's first class).
    - ``maxsize``: items each class may buffer before ``put`` waits (backpressure).
    - ``on_error(item, exc)``: called when the handler raises (default: logged
      as ``admission.file_enrichment.pool.task_failed``); the pool goes on.
    """

    def __init__(
        self,
        limiter: AdaptiveLimiter,
        handler: Callable[[T], Awaitable[object]],
        *,
        classify: Callable[[T], str] | None = None,
        maxsize: int = 64,
        on_error: Callable[[T, Exception], object] | None = None,
    ) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"maxsize must be an int >= 1, got {maxsize!r}")
        self.limiter = limiter
        self._handler = handler
        self._classify = classify
        self._maxsize = maxsize
        self._on_error = on_error
        self._lanes: dict[str, _Lane[T]] = {}
        self._tg: TaskGroup | None = None
        self._closed = False
        self._seq = 0
        self._pending = 0
        self._idle: _Signal | None = None
        self._unfinished: list[T] = []
        self.completed_total = 0
        self.failed_total = 0

    # -- figures ---------------------------------------------------------------

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @property
    def running(self) -> Mapping[str, int]:
        """Items whose handler runs now, per class."""
        return {name: len(lane.running) for name, lane in self._lanes.items()}

    @property
    def queued(self) -> Mapping[str, int]:
        """Items put and not yet started, per class."""
        return {name: len(lane.items) for name, lane in self._lanes.items()}

    @property
    def unfinished(self) -> tuple[T, ...]:
        """After an abnormal exit: the items accepted but not finished (cancelled or never run)."""
        return tuple(self._unfinished)

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._tg is not None:
            raise RuntimeError("a WorkerPool can be entered only once")
        self._lanes = {name: _Lane(name) for name in self.limiter.workload_classes}
        self._idle = _Signal()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        for lane in self._lanes.values():
            tg.start_soon(self._dispatch, lane, name=f"{self.limiter.name}/{lane.name} dispatcher")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None, "the pool was not entered"
        if exc_type is None:
            self.close()  # drain: the dispatchers stop once their lanes are empty
        else:
            self._tg.cancel_scope.cancel()
        try:
            # The body's exception is not handed to the task group, which would wrap
            # it in an ExceptionGroup: it propagates as the body raised it.
            await self._tg.__aexit__(None, None, None)
            return None
        finally:
            self.close()
            for lane in self._lanes.values():
                self._unfinished.extend(lane.items)
                lane.items.clear()

    def close(self) -> None:
        """Accept no more items; what was put still runs, then the pool's block may exit."""
        self._closed = True
        for lane in self._lanes.values():
            lane.has_items.notify()
            lane.has_space.notify()

    # -- putting ---------------------------------------------------------------

    async def put(self, item: T) -> None:
        """Add ``item``, waiting while its class's lane is full.

        ``anyio.ClosedResourceError`` once the pool is closed (the item was not taken).
        """
        await anyio.lowlevel.checkpoint()
        lane = self._lane_for(item)
        while len(lane.items) >= self._maxsize:
            await lane.has_space.wait()
            self._check_open()
        self._accept(lane, item)

    def put_nowait(self, item: T) -> None:
        """Add ``item`` now; ``anyio.WouldBlock`` if its class's lane is full."""
        lane = self._lane_for(item)
        if len(lane.items) >= self._maxsize:
            raise anyio.WouldBlock(f"the {lane.name!r} lane is full ({self._maxsize} items)")
        self._accept(lane, item)

    async def join(self) -> None:
        """Wait until every item put so far has been processed (or has failed)."""
        while self._pending:
            assert self._idle is not None
            await self._idle.wait()
        await anyio.lowlevel.checkpoint()

    def _check_open(self) -> None:
        if self._tg is None:
            raise RuntimeError("enter the pool first: async with WorkerPool(...) as pool")
        if self._closed:
            raise anyio.ClosedResourceError("the worker pool is closed")

    def _lane_for(self, item: T) -> _Lane[T]:
        self._check_open()
        name = self._classify(item) if self._classify is not None else None
        if name is None:
            return next(iter(self._lanes.values()))
        try:
            return self._lanes[name]
        except KeyError:
            known = ", ".join(map(repr, self._lanes))
            raise ValueError(
                f"{self.limiter.name}: unknown workload_class {name!r} (known: {known})"
            ) from None

    def _accept(self, lane: _Lane[T], item: T) -> None:
        lane.items.append(item)
        self._pending += 1
        lane.has_items.notify()

    # -- running ---------------------------------------------------------------

    async def _dispatch(self, lane: _Lane[T]) -> None:
        tg = self._tg
        assert tg is not None
        while True:
            while not lane.items:
                if self._closed:
                    return
                await lane.has_items.wait()
            # The permit first, the item after: an item waiting for room stays in
            # its lane (counted by maxsize), and no permit is ever held idle.
            permit = await self.limiter.acquire(workload_class=lane.name)
            item = lane.items.popleft()
            lane.has_space.notify()
            self._seq += 1
            lane.running[self._seq] = item
            tg.start_soon(self._run, lane, self._seq, item, permit)

    async def _run(self, lane: _Lane[T], key: int, item: T, permit: Permit) -> None:
        finished = False
        try:
            try:
                await self._handler(item)
            except Exception as exc:
                self.failed_total += 1
                finished = True
                self._failed(item, exc)
            else:
                self.completed_total += 1
                finished = True
        finally:
            permit.release()
            del lane.running[key]
            if finished:
                self._pending -= 1
                if not self._pending and self._idle is not None:
                    self._idle.notify()
            else:
                self._unfinished.append(item)  # cancelled: hand it back

    def _failed(self, item: T, exc: Exception) -> None:
        if self._on_error is not None:
            self._on_error(item, exc)
            return
        events.logger().error(
            TASK_FAILED,
            limiter=self.limiter.name,
            item=repr(item)[:120],
            error=f"{type(exc).__name__}: {exc}",
            exc_info=exc,
        )
