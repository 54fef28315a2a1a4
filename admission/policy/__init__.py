"""The policy: configuration models, presets and the pure state machine.

Nothing here does I/O at evaluation time or reads a clock: the engine is told
``now``.  See DESIGN.md "Policy semantics (exact)".
"""

from admission.policy.config import ClassPolicy, LevelLimits, Preset, QueuePolicy, QueuePolicyPatch
from admission.policy.engine import Observation, PolicyEngine
from admission.policy.levels import FAIL_SAFE, Level, Signal
from admission.policy.loader import (
    AdmissionConfig,
    AdmissionSettings,
    ConfigError,
    PolicyConfig,
    builtin_presets,
    load_config,
    parse_config,
)
from admission.policy.samples import FailureKind, QueueSample, ReadFailure, signal_value
from admission.policy.state import (
    ClassState,
    Decision,
    Override,
    PolicyState,
    QueueState,
    Transition,
    Window,
)

__all__ = [
    "FAIL_SAFE",
    "AdmissionConfig",
    "AdmissionSettings",
    "ClassPolicy",
    "ClassState",
    "ConfigError",
    "Decision",
    "FailureKind",
    "Level",
    "LevelLimits",
    "Observation",
    "Override",
    "PolicyConfig",
    "PolicyEngine",
    "PolicyState",
    "Preset",
    "QueuePolicy",
    "QueuePolicyPatch",
    "QueueSample",
    "QueueState",
    "ReadFailure",
    "Signal",
    "Transition",
    "Window",
    "builtin_presets",
    "load_config",
    "parse_config",
    "signal_value",
]
