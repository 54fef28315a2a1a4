"""admission: adaptive admission control for asyncio/anyio queue workers."""

from admission.bucket import TokenBucket
from admission.classes import WorkloadClass
from admission.clock import (
    Clock,
    LoopClock,
    ScaledClock,
    SystemClock,
    get_default_clock,
    set_default_clock,
)
from admission.errors import AdmissionError, AdmissionTimeout
from admission.limiter import AdaptiveLimiter, Permit
from admission.snapshot import ClassSnapshot, LimiterSnapshot

__all__ = [
    "AdaptiveLimiter",
    "AdmissionError",
    "AdmissionTimeout",
    "ClassSnapshot",
    "Clock",
    "LimiterSnapshot",
    "LoopClock",
    "Permit",
    "ScaledClock",
    "SystemClock",
    "TokenBucket",
    "WorkloadClass",
    "get_default_clock",
    "set_default_clock",
]

__version__ = "0.1.0"
