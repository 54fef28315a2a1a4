"""Pressure levels and the signals they are read from."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FAIL_SAFE", "Level", "Signal"]


class Level(StrEnum):
    """A queue's pressure level, ordered ``normal < warning < critical``."""

    NORMAL = "normal"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def __lt__(self, other: str) -> bool:
        if isinstance(other, Level):
            return _RANK[self] < _RANK[other]
        return NotImplemented

    def __le__(self, other: str) -> bool:
        if isinstance(other, Level):
            return _RANK[self] <= _RANK[other]
        return NotImplemented

    def __gt__(self, other: str) -> bool:
        if isinstance(other, Level):
            return _RANK[self] > _RANK[other]
        return NotImplemented

    def __ge__(self, other: str) -> bool:
        if isinstance(other, Level):
            return _RANK[self] >= _RANK[other]
        return NotImplemented


_RANK = {Level.NORMAL: 0, Level.WARNING: 1, Level.CRITICAL: 2}

#: The name transitions use for the fail-safe mode (not a level: it overrides levels).
FAIL_SAFE = "fail_safe"


class Signal(StrEnum):
    """What a queue's thresholds are compared with."""

    MESSAGES_READY = "messages_ready"
    READY_PLUS_UNACKED = "ready_plus_unacked"
    BACKLOG_PER_CONSUMER = "backlog_per_consumer"
    OLDEST_MESSAGE_AGE = "oldest_message_age"
    DRAIN_TIME = "drain_time"
