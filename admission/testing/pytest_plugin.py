"""pytest plugin (entry point ``admission``): the ``admission_clock`` fixture.

Loaded whenever admission is installed, so it imports nothing heavy: the
fixture needs time-machine's own ``time_machine`` fixture, which a project
gets by installing ``admission[testing]`` (or time-machine itself).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from time_machine import TimeMachineFixture

    from admission.testing import VirtualClock


@pytest.fixture
def admission_clock(time_machine: TimeMachineFixture) -> Iterator[VirtualClock]:
    """Frozen, virtual time for the test; ``await admission_clock.advance(s)`` moves it.

    Limiters (and anything else taking a clock) built during the test without
    an explicit ``clock=`` use it too.
    """
    from admission.clock import set_default_clock
    from admission.testing import EPOCH, VirtualClock

    time_machine.move_to(EPOCH, tick=False)
    clock = VirtualClock(time_machine.shift)
    previous = set_default_clock(clock)
    try:
        yield clock
    finally:
        set_default_clock(previous)
