"""A valid configuration broken in one known place, and what its error must name.

``broken_configs()`` draws a valid configuration (badinput_configs.py), picks a
kind of breakage from :data:`MUTATIONS` and a place for it among the tables the
configuration has (or one table it adds), and says which fragments the
:class:`ConfigError` message must contain: the dotted path of the key and the
bad value (``***`` for a key named like a credential, never the value).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from badinput_configs import BUILTIN, LEVELS, Table, configs, level_limits, names
from hypothesis import strategies as st

from admission.policy import Signal, parse_config

SECRET_WORDS = ("pass", "pasw", "pwd", "secret", "token", "cred", "auth")
KNOWN_KEYS = frozenset(
    {
        *("signal", "warning_threshold", "critical_threshold", "exit_ratio", "failure_threshold"),
        *("sustained_seconds", "cooldown_seconds", "stale_after_seconds", "recovery_seconds"),
        *("parallelism", "rate", "burst", "minimum_floor", "deferred_admission"),
        *("name", "extends", "description", "queues", "classes", "watches", "extensions"),
        *("preset", "poll_interval_seconds", "telemetry", "presets", "rabbitmq", "url"),
        *("username", "password", "password_env", "vhost", "timeout_seconds"),
        *LEVELS,
    }
)
NAN, INF = math.nan, math.inf


@dataclass
class Broken:
    kind: str
    data: Table
    named: tuple[str, ...]
    #: Stands in for ADMISSION_PRESET (parse_config's ``preset=``).
    env_preset: str | None = None


@dataclass
class Site:
    """A table of the configuration: where its keys' paths start, and how errors name it."""

    table: Table
    prefix: str
    whole: str = ""
    queue: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def path(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key


def shown(key: str, value: object) -> str:
    return "***" if any(word in key.lower() for word in SECRET_WORDS) else repr(value)


# -- values ------------------------------------------------------------------------

junk = (
    st.text(max_size=8)
    | st.booleans()
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)
WRONG_TYPE: dict[str, st.SearchStrategy[Any]] = {
    "number": junk,
    "count": junk | st.floats(allow_nan=False),  # 3.0 is not a count in TOML
    "flag": st.integers() | st.text(max_size=5) | st.floats(allow_nan=False),
    "signal": st.integers() | st.booleans() | st.text().filter(lambda t: t not in set(Signal)),
    "string": st.integers() | st.booleans() | st.lists(st.text(max_size=3), max_size=2),
}
negative = st.integers(max_value=-1) | st.floats(max_value=-1e-300)
not_finite = st.sampled_from([NAN, INF, -INF])
not_positive = negative | st.sampled_from([0, 0.0, -0.0]) | not_finite
OUT_OF_RANGE: dict[str, st.SearchStrategy[Any]] = {
    "warning_threshold": negative | not_finite,
    "critical_threshold": negative | not_finite,
    "stale_after_seconds": not_positive,
    "failure_threshold": st.integers(max_value=0),
    "poll_interval_seconds": not_positive,
    "timeout_seconds": not_positive,
    "parallelism": st.integers(max_value=0),
    "rate": not_positive,
    "burst": st.floats(max_value=1, exclude_max=True) | st.integers(max_value=0) | not_finite,
    "minimum_floor": st.integers(max_value=-1),
}
EXIT_RATIO = (
    st.floats(max_value=0) | st.floats(min_value=1) | st.integers(max_value=0) | st.just(NAN)
)
NEGATIVE_WINDOW = negative | st.just(-INF)
PATCH_TYPES = {
    "signal": "signal",
    "failure_threshold": "count",
    **dict.fromkeys(
        (
            "warning_threshold",
            "critical_threshold",
            "exit_ratio",
            "sustained_seconds",
            "cooldown_seconds",
            "stale_after_seconds",
            "recovery_seconds",
        ),
        "number",
    ),
}
LIMIT_TYPES = {
    "parallelism": "count",
    "minimum_floor": "count",
    "rate": "number",
    "burst": "number",
    "deferred_admission": "flag",
}


# -- places ----------------------------------------------------------------------------


def _fresh(taken: object, base: str = "zz-broken") -> str:
    name = base
    while name in taken:  # type: ignore[operator]
        name += "_"
    return name


def _new_preset(data: Table, table: Table) -> tuple[str, Table]:
    presets = data.setdefault("presets", {})
    name = _fresh(presets)
    presets[name] = {"extends": "balanced", **table}
    return name, presets[name]


def patch_site(draw: st.DrawFn, data: Table) -> Site:
    """A table of queue-policy keys: a queue entry, a preset, a preset's queue (or a new one)."""
    sites = [
        Site(entry, f"queues[{i}]", f"queues[{entry['name']!r}]", entry["name"])
        for i, entry in enumerate(data.get("queues", []))
    ]
    for name, preset in data.get("presets", {}).items():
        sites.append(Site(preset, f"presets.{name}", f"presets.{name}"))
        for queue, table in preset.get("queues", {}).items():
            where = f"presets.{name}.queues.{queue}"
            sites.append(Site(table, where, where, queue, {"in_preset": True}))
    pick = draw(st.integers(0, len(sites)))
    if pick < len(sites):
        return sites[pick]
    name, preset = _new_preset(data, {})
    return Site(preset, f"presets.{name}", f"presets.{name}")


def limits_site(draw: st.DrawFn, data: Table) -> Site:
    """One level's limits of a preset's class (or of a new preset's)."""
    sites = [
        Site(table[level], f"presets.{name}.classes.{klass}.{level}")
        for name, preset in data.get("presets", {}).items()
        for klass, table in preset.get("classes", {}).items()
        for level in LEVELS
        if level in table
    ]
    pick = draw(st.integers(0, len(sites)))
    if pick < len(sites):
        return sites[pick]
    level = draw(st.sampled_from(LEVELS))
    name, preset = _new_preset(data, {"classes": {"expensive": {level: draw(level_limits())}}})
    return Site(preset["classes"]["expensive"][level], f"presets.{name}.classes.expensive.{level}")


def scalar_site(data: Table, key: str) -> Site:
    if key == "timeout_seconds":
        telemetry = data.setdefault("telemetry", {})
        telemetry["rabbitmq"] = telemetry.get("rabbitmq") or {}
        return Site(telemetry["rabbitmq"], "telemetry.rabbitmq")
    return Site(data, "")


def any_site(draw: st.DrawFn, data: Table) -> tuple[Site, str]:
    """Any table of the configuration, and how its unknown keys are refused."""
    choice = draw(
        st.sampled_from(["top", "patch", "limits", "class entry", "preset class", "telemetry"])
    )
    if choice == "patch":
        site = patch_site(draw, data)
        in_preset_top = site.prefix.startswith("presets.") and site.queue is None
        return site, ": not a preset key" if in_preset_top else ": Extra inputs are not permitted"
    if choice == "limits":
        return limits_site(draw, data), ": Extra inputs are not permitted"
    if choice == "class entry":
        klass = draw(st.sampled_from(["standard", "expensive"]))
        classes = data.setdefault("classes", {})
        return Site(classes.setdefault(klass, {}), f"classes.{klass}"), ": Extra inputs"
    if choice == "preset class":
        name, preset = _new_preset(data, {"classes": {"standard": {}}})
        return Site(preset["classes"]["standard"], f"presets.{name}.classes.standard"), ": Extra"
    if choice == "telemetry":
        return scalar_site(data, "timeout_seconds"), ": Extra inputs are not permitted"
    return Site(data, ""), ": Extra inputs are not permitted"


# -- mutations -------------------------------------------------------------------------

Mutation = Callable[[st.DrawFn, Table], Broken]


def wrong_type(draw: st.DrawFn, data: Table) -> Broken:
    place = draw(st.sampled_from(["patch", "limits", "scalar", "string"]))
    if place == "patch":
        site, key = patch_site(draw, data), draw(st.sampled_from(sorted(PATCH_TYPES)))
        kind = PATCH_TYPES[key]
    elif place == "limits":
        site, key = limits_site(draw, data), draw(st.sampled_from(sorted(LIMIT_TYPES)))
        kind = LIMIT_TYPES[key]
    elif place == "scalar":
        key = draw(st.sampled_from(["poll_interval_seconds", "timeout_seconds"]))
        site, kind = scalar_site(data, key), "number"
    else:
        key = draw(st.sampled_from(["preset", "url", "username", "password", "vhost"]))
        site = Site(data, "") if key == "preset" else scalar_site(data, "timeout_seconds")
        kind = "string"
    value = draw(WRONG_TYPE[kind])
    site.table[key] = value
    return Broken("wrong_type", data, (f"{site.path(key)}={shown(key, value)}",))


def out_of_range(draw: st.DrawFn, data: Table) -> Broken:
    key = draw(st.sampled_from(sorted(OUT_OF_RANGE)))
    if key in PATCH_TYPES:
        site = patch_site(draw, data)
    elif key in LIMIT_TYPES:
        site = limits_site(draw, data)
    else:
        site = scalar_site(data, key)
    value = draw(OUT_OF_RANGE[key])
    site.table[key] = value
    return Broken("out_of_range", data, (f"{site.path(key)}={value!r}",))


def exit_ratio(draw: st.DrawFn, data: Table) -> Broken:
    site, value = patch_site(draw, data), draw(EXIT_RATIO)
    site.table["exit_ratio"] = value
    return Broken("exit_ratio_outside_0_1", data, (f"{site.path('exit_ratio')}={value!r}",))


def negative_window(draw: st.DrawFn, data: Table) -> Broken:
    site = patch_site(draw, data)
    key = draw(st.sampled_from(["sustained_seconds", "cooldown_seconds", "recovery_seconds"]))
    value = draw(NEGATIVE_WINDOW)
    site.table[key] = value
    return Broken("negative_window", data, (f"{site.path(key)}={value!r}",))


def critical_not_above_warning(draw: st.DrawFn, data: Table) -> Broken:
    site = patch_site(draw, data)
    if site.extra.get("in_preset"):
        # A queue entry's own thresholds would win over the preset's table: none here.
        for entry in data.get("queues", []):
            if entry["name"] == site.queue:
                entry.pop("warning_threshold", None)
                entry.pop("critical_threshold", None)
    warning = draw(st.integers(0, 10**9) | st.floats(0, 1e9))
    critical = draw(st.sampled_from([warning, warning / 2, 0]) | st.floats(0, warning))
    site.table.update(warning_threshold=warning, critical_threshold=critical)
    named = (
        f"{site.whole}: ",
        f"critical_threshold={critical:g}",
        f"warning_threshold={warning:g}",
    )
    return Broken("critical_not_above_warning", data, named)


def floor_above_parallelism(draw: st.DrawFn, data: Table) -> Broken:
    site = limits_site(draw, data)
    parallelism = draw(st.integers(1, 64))
    floor = parallelism + draw(st.integers(1, 1000))
    site.table.update(parallelism=parallelism, minimum_floor=floor)
    message = f"{site.prefix}: minimum_floor={floor} is above parallelism={parallelism}"
    return Broken("floor_above_parallelism", data, (message,))


def unknown_preset(draw: st.DrawFn, data: Table) -> Broken:
    known = {*BUILTIN, *data.get("presets", {})}
    name = draw(names.filter(lambda n: n not in known))
    where = draw(st.sampled_from(["preset", "ADMISSION_PRESET", "extends"]))
    if where == "preset":
        data["preset"] = name
        return Broken("unknown_preset", data, (f"preset={name!r} is not a known preset",))
    if where == "ADMISSION_PRESET":
        named = (f"preset={name!r} is not a known preset",)
        return Broken("unknown_preset", data, named, env_preset=name)
    children: list[str] = [p for p, t in data.get("presets", {}).items() if "extends" in t]
    edit_one = draw(st.booleans())
    if children and edit_one:
        child = draw(st.sampled_from(children))
        data["presets"][child]["extends"] = name
    else:
        child, table = _new_preset(data, {})
        table["extends"] = name
    return Broken(
        "unknown_preset", data, (f"presets.{child}.extends={name!r} is not a known preset",)
    )


def unknown_class(draw: st.DrawFn, data: Table) -> Broken:
    known = {c for preset in parse_config(data).presets.values() for c in preset.classes}
    name = draw(names.filter(lambda n: n not in known))
    data.setdefault("classes", {})[name] = draw(
        st.fixed_dictionaries({}, optional={"watches": st.lists(names, max_size=2)})
    )
    return Broken("unknown_class", data, (f"classes.{name}: not a workload class of preset",))


def unknown_key(draw: st.DrawFn, data: Table) -> Broken:
    site, refusal = any_site(draw, data)
    key = draw(st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True).filter(_unknown))
    value = draw(st.integers() | st.text(max_size=6) | st.booleans())
    site.table[key] = value
    return Broken("unknown_key", data, (f"{site.path(key)}={shown(key, value)}{refusal}",))


def _unknown(key: str) -> bool:
    return key not in KNOWN_KEYS


def not_a_table(draw: st.DrawFn, data: Table) -> Broken:
    value = draw(st.integers() | st.text(max_size=4) | st.lists(st.integers(), max_size=2))
    where = draw(st.sampled_from(["preset", "queues", "classes", "class", "level", "entry"]))
    if where == "entry":
        data["queues"] = [*data.get("queues", []), value]
        at = f"queues[{len(data['queues']) - 1}]={value!r}"
        return Broken("not_a_table", data, (at, "valid dictionary"))
    if where == "preset":
        name, _ = _new_preset(data, {})
        data["presets"][name] = value
        return Broken("not_a_table", data, (f"presets.{name}={value!r}", "dictionary"))
    if where in ("queues", "classes"):
        name, preset = _new_preset(data, {})
        preset[where] = value
        return Broken("not_a_table", data, (f"presets.{name}.{where}={value!r}: must be a table",))
    if where == "class":
        name, preset = _new_preset(data, {"classes": {"expensive": value}})
        at = f"presets.{name}.classes.expensive={value!r}: must be a table"
        return Broken("not_a_table", data, (at,))
    level = draw(st.sampled_from(LEVELS))
    name, preset = _new_preset(data, {"classes": {"standard": {level: value}}})
    return Broken("not_a_table", data, (f"presets.{name}.classes.standard.{level}={value!r}",))


MUTATIONS: dict[str, Mutation] = {
    "wrong_type": wrong_type,
    "out_of_range": out_of_range,
    "exit_ratio_outside_0_1": exit_ratio,
    "negative_window": negative_window,
    "critical_not_above_warning": critical_not_above_warning,
    "floor_above_parallelism": floor_above_parallelism,
    "unknown_preset": unknown_preset,
    "unknown_class": unknown_class,
    "unknown_key": unknown_key,
    "not_a_table": not_a_table,
}


@st.composite
def broken_configs(draw: st.DrawFn, kind: str) -> Broken:
    """A valid configuration broken by the mutation ``kind``."""
    return MUTATIONS[kind](draw, copy.deepcopy(draw(configs())))
