"""A task group owned by an object across ``__aenter__`` and ``__aexit__``.

Components that run in the background (the monitor, workflow admission, the
fleet publisher) offer both ``await task_group.start(component.run)`` and
``async with component:``; the second keeps a task group open between the two
halves of the context manager, and these two functions are that, written once.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import TaskGroup

__all__ = ["start_owned", "stop_owned"]


async def start_owned(*runs: Callable[..., Coroutine[Any, Any, Any]]) -> TaskGroup:
    """An open task group with every ``run`` started in it (``task_group.start``).

    If a start fails, the group is cancelled and closed before the error propagates.
    """
    task_group = anyio.create_task_group()
    await task_group.__aenter__()
    try:
        for run in runs:
            await task_group.start(run)
    except BaseException:
        task_group.cancel_scope.cancel()
        await task_group.__aexit__(None, None, None)
        raise
    return task_group


async def stop_owned(task_group: TaskGroup) -> None:
    """Cancel the group and wait for its tasks.

    The caller's own exception is not handed to the group, which would wrap it
    in an ExceptionGroup: it propagates as the body of ``async with`` raised it.
    """
    task_group.cancel_scope.cancel()
    await task_group.__aexit__(None, None, None)
