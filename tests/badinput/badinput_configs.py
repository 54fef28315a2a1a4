"""Valid configurations as hypothesis strategies, and a TOML writer for them.

Built from DESIGN.md "Configuration" and the ranges of the config models: every
documented key, values anywhere in their range (edges included), presets that
extend built-in or earlier user presets, tuned built-ins, stand-alone presets.
Thresholds are written in pairs (both or neither) at every layer, so whatever
the layers resolve to keeps ``critical_threshold > warning_threshold``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

from admission.policy import Signal

BUILTIN = ("conservative", "balanced", "aggressive")
KNOWN_QUEUES = ("files-new_file", "files-document_conversion_input", "titus-titus_input")
BUILTIN_CLASSES = ("standard", "expensive")
LEVELS = ("normal", "warning", "critical")
QUEUE_KEYS = (
    "signal",
    "warning_threshold",
    "critical_threshold",
    "exit_ratio",
    "sustained_seconds",
    "cooldown_seconds",
    "stale_after_seconds",
    "failure_threshold",
    "recovery_seconds",
)
LIMIT_KEYS = ("parallelism", "rate", "burst", "minimum_floor", "deferred_admission")

Table = dict[str, Any]

names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)  # no lone surrogates
queue_names = st.sampled_from(KNOWN_QUEUES) | names
amounts = st.integers(0, 10**9) | st.floats(0, 1e9)
windows = st.integers(0, 10**6) | st.floats(0, 1e6)
positive = st.integers(1, 10**6) | st.floats(0, 1e6, exclude_min=True)
ratios = st.floats(0, 1, exclude_min=True, exclude_max=True)


@st.composite
def thresholds(draw: st.DrawFn) -> Table:
    low, high = sorted((draw(amounts), draw(amounts)))
    if low == high:
        high = low + 1
    return {"warning_threshold": low, "critical_threshold": high}


@st.composite
def queue_patch(draw: st.DrawFn, *, complete: bool = False) -> Table:
    """Queue-policy keys; ``complete``: enough for a preset of its own."""
    patch: Table = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "signal": st.sampled_from([s.value for s in Signal]),
                "exit_ratio": ratios,
                "sustained_seconds": windows,
                "cooldown_seconds": windows,
                "stale_after_seconds": positive,
                "failure_threshold": st.integers(1, 20),
                "recovery_seconds": windows,
            },
        )
    )
    if complete or draw(st.booleans()):
        patch.update(draw(thresholds()))
    if complete:
        patch.setdefault("sustained_seconds", draw(windows))
        patch.setdefault("cooldown_seconds", draw(windows))
    return patch


@st.composite
def level_limits(draw: st.DrawFn) -> Table:
    parallelism = draw(st.integers(1, 64))
    table: Table = {
        "parallelism": parallelism,
        "rate": draw(st.integers(1, 10**6) | st.floats(0, 1e6, exclude_min=True)),
        "burst": draw(st.integers(1, 10**6) | st.floats(1, 1e6)),
        "minimum_floor": draw(st.integers(0, parallelism)),
    }
    if draw(st.booleans()):
        table["deferred_admission"] = draw(st.booleans())
    return table


@st.composite
def class_table(draw: st.DrawFn, queues: list[str], *, new: bool) -> Table:
    """A class's table: every level for a new class, any of them for an inherited one."""
    levels = LEVELS if new else draw(st.lists(st.sampled_from(LEVELS), unique=True))
    table: Table = {level: draw(level_limits()) for level in levels}
    if draw(st.booleans()):
        table["watches"] = draw(st.lists(st.sampled_from([*queues, *KNOWN_QUEUES]), max_size=3))
    if draw(st.booleans()):
        table["extensions"] = draw(st.lists(names, max_size=3))
    return table


@st.composite
def preset_table(draw: st.DrawFn, name: str, parents: list[str], queues: list[str]) -> Table:
    """A user's ``[presets.NAME]``: a tuned built-in, a child of a known preset, or its own."""
    alone = name not in BUILTIN and draw(st.booleans())
    table: Table = draw(queue_patch(complete=alone))
    if name not in BUILTIN and not alone:
        table["extends"] = draw(st.sampled_from(parents))
    if draw(st.booleans()):
        table["description"] = draw(st.text(max_size=20))
    if draw(st.booleans()):
        table["queues"] = {
            queue: draw(queue_patch())
            for queue in draw(st.lists(st.sampled_from([*queues, *KNOWN_QUEUES]), unique=True))
        }
    classes: Table = {}
    inherited = () if alone else BUILTIN_CLASSES
    class_names = (st.sampled_from(inherited) | names) if inherited else names
    for class_name in draw(st.lists(class_names, max_size=3, unique=True)):
        classes[class_name] = draw(class_table(queues, new=class_name not in inherited))
    if alone:  # [classes.standard] and [classes.expensive] must find them in every preset
        for class_name in BUILTIN_CLASSES:
            classes.setdefault(class_name, draw(class_table(queues, new=True)))
    if classes:
        table["classes"] = classes
    return table


@st.composite
def configs(draw: st.DrawFn) -> Table:
    """A valid configuration mapping (what ``tomllib`` makes of a valid file)."""
    data: Table = {}
    queues: list[str] = draw(st.lists(queue_names, max_size=4, unique=True))
    listed = draw(st.booleans())  # an empty [[queues]] list too
    if queues or listed:
        data["queues"] = [{"name": queue, **draw(queue_patch())} for queue in queues]
    if draw(st.booleans()):
        data["poll_interval_seconds"] = draw(st.integers(1, 3600) | st.floats(0.001, 3600))
    presets: Table = {}
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(BUILTIN) | names)
        if name in presets:
            continue
        # Parents come first (built-ins, then earlier user presets): each error
        # then belongs to the preset it is written in.
        presets[name] = draw(preset_table(name, [*BUILTIN, *presets], queues))
    if presets:
        data["presets"] = presets
    if draw(st.booleans()):
        data["preset"] = draw(st.sampled_from([*BUILTIN, *presets]))
    classes = draw(st.lists(st.sampled_from(BUILTIN_CLASSES), unique=True))
    if classes:
        data["classes"] = {
            c: draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "watches": st.lists(st.sampled_from([*queues, *KNOWN_QUEUES])),
                        "extensions": st.lists(names, max_size=3),
                    },
                )
            )
            for c in classes
        }
    if draw(st.booleans()):
        data["telemetry"] = {
            "rabbitmq": draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "url": st.just("http://127.0.0.1:15672"),
                        "username": names,
                        "password": names,
                        "vhost": names,
                        "timeout_seconds": positive,
                    },
                )
            )
        }
    return data


# -- TOML ------------------------------------------------------------------------------


def to_toml(data: Mapping[str, Any]) -> str:
    """``data`` as a TOML document (nested tables inline; tomllib reads it back equal)."""
    return "".join(f"{_key(key)} = {_value(value)}\n" for key, value in data.items())


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _string(key)


def _string(text: str) -> str:
    # JSON escapes the control characters TOML forbids, all but DEL.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")
