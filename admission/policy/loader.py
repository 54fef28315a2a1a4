"""Reading the configuration: built-in presets, the user's TOML file, the environment.

The TOML format is DESIGN.md "Configuration"; its documented keys are a public
contract.  Every error is a :class:`ConfigError` that names the key and the
value, and an unknown preset name is an error, never a fallback.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from admission._urls import mask_url
from admission.errors import AdmissionError
from admission.policy.config import (
    ClassPolicy,
    LevelLimits,
    Number,
    Preset,
    QueuePolicy,
    QueuePolicyPatch,
)

__all__ = [
    "AdmissionConfig",
    "AdmissionSettings",
    "ConfigError",
    "PolicyConfig",
    "RabbitMQTelemetry",
    "builtin_presets",
    "load_config",
    "parse_config",
]

M = TypeVar("M", bound=BaseModel)

QUEUE_KEYS = frozenset(QueuePolicyPatch.model_fields)
#: A key named with one of these may hold a credential: an error names it, never its value
#: (``password`` of the wrong type, or a typo such as ``pasword = "..."``).
_SECRET_WORDS = ("pass", "pasw", "pwd", "secret", "token", "cred", "auth")
BUILTIN_NAMES = ("conservative", "balanced", "aggressive")


class ConfigError(AdmissionError, ValueError):
    """The configuration is invalid; the message names the key and the value."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RabbitMQTelemetry(_Strict):
    """``[telemetry.rabbitmq]``: the management API to sample."""

    url: str = "http://127.0.0.1:15672"
    username: str = "guest"
    password: SecretStr | None = None
    password_env: str | None = None
    vhost: str = "/"
    timeout_seconds: Number = Field(default=5.0, gt=0, allow_inf_nan=False)

    def __repr_args__(self) -> Any:
        # The URL may carry ``user:password@`` (the source takes credentials from it).
        for key, value in super().__repr_args__():
            yield key, (mask_url(value) if key == "url" and isinstance(value, str) else value)

    def resolved_password(self) -> SecretStr:
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(
                    f"telemetry.rabbitmq.password_env={self.password_env!r}: "
                    "that environment variable is not set"
                )
            return SecretStr(value)
        return self.password if self.password is not None else SecretStr("guest")


class Telemetry(_Strict):
    rabbitmq: RabbitMQTelemetry | None = None


class QueueEntry(QueuePolicyPatch):
    """``[[queues]]``: a queue to watch, with optional overrides of the preset."""

    name: str = Field(min_length=1)


class ClassEntry(_Strict):
    """``[classes.NAME]``: which queues a class watches and its extensions."""

    watches: tuple[str, ...] | None = None
    extensions: tuple[str, ...] | None = None


class AdmissionConfig(_Strict):
    """The configuration file, as written (presets not yet resolved)."""

    preset: str = "balanced"
    poll_interval_seconds: Number = Field(default=5.0, gt=0, allow_inf_nan=False)
    telemetry: Telemetry = Telemetry()
    queues: tuple[QueueEntry, ...] = ()
    presets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    classes: dict[str, ClassEntry] = Field(default_factory=dict)


class PolicyConfig(BaseModel):
    """Everything the engine needs: presets resolved, the requested one checked."""

    model_config = ConfigDict(frozen=True)

    requested_preset: str
    poll_interval_seconds: float
    queues: tuple[str, ...]
    presets: dict[str, Preset]
    telemetry: Telemetry = Telemetry()

    @property
    def preset(self) -> Preset:
        return self.presets[self.requested_preset]

    def get_preset(self, name: str) -> Preset:
        """The preset called ``name``; a :class:`ConfigError` listing the known ones if none."""
        try:
            return self.presets[name]
        except KeyError:
            known = ", ".join(sorted(self.presets))
            raise ConfigError(f"preset={name!r} is not a known preset (known: {known})") from None


class AdmissionSettings(BaseSettings):
    """The environment: ``ADMISSION_CONFIG``, ``ADMISSION_PRESET``, ``ADMISSION_API_TOKEN``."""

    model_config = SettingsConfigDict(env_prefix="ADMISSION_", extra="ignore", frozen=True)

    config: Path | None = None
    preset: str | None = None
    api_token: SecretStr | None = None


# -- resolution -------------------------------------------------------------


def _builtin_raw() -> dict[str, dict[str, Any]]:
    text = resources.files("admission.policy").joinpath("presets.toml").read_text("utf-8")
    presets: dict[str, dict[str, Any]] = tomllib.loads(text)["presets"]
    return presets


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _extend(parent: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """Layer a child preset over its parent.

    A queue-policy key at the child's top level is meant "for every queue", so
    it also replaces the parent's per-queue values of that key.
    """
    child_defaults = QUEUE_KEYS & child.keys()
    parent_queues = {
        queue: {k: v for k, v in table.items() if k not in child_defaults}
        for queue, table in parent.get("queues", {}).items()
    }
    base = {**parent, "queues": parent_queues}
    return _deep_merge(base, {k: v for k, v in child.items() if k != "extends"})


def _flatten(
    name: str, raw: Mapping[str, Mapping[str, Any]], seen: tuple[str, ...] = ()
) -> dict[str, Any]:
    if name in seen:
        chain = " -> ".join((*seen, name))
        raise ConfigError(f"presets.{seen[0]}.extends: a cycle ({chain})")
    table = raw[name]
    parent = table.get("extends")
    if parent is None:
        return dict(table)
    if not isinstance(parent, str) or parent not in raw:
        known = ", ".join(sorted(raw))
        raise ConfigError(
            f"presets.{name}.extends={parent!r} is not a known preset (known: {known})"
        )
    return _extend(_flatten(parent, raw, (*seen, name)), table)


def _queue_policy(where: str, layers: list[Mapping[str, Any]], poll_interval: float) -> QueuePolicy:
    values: dict[str, Any] = {}
    for layer in layers:
        values.update(layer)
    values.setdefault("stale_after_seconds", max(3 * poll_interval, 15.0))
    if "cooldown_seconds" in values:
        values.setdefault("recovery_seconds", values["cooldown_seconds"])
    return _validated(QueuePolicy, values, where)


def _validated(model: type[M], values: Mapping[str, Any], where: str) -> M:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        message = _describe(exc, where, values)
    # Raised outside the handler: pydantic's error (which quotes every input, a
    # password too) is not even kept as the hidden context.
    raise ConfigError(message)


def _describe(exc: ValidationError, where: str, values: Mapping[str, Any]) -> str:
    lines = []
    for error in exc.errors():
        key = where
        for part in error["loc"]:
            key = f"{key}[{part}]" if isinstance(part, int) else f"{key}.{part}"
        key = key.removeprefix("config.")
        names = [part for part in error["loc"] if isinstance(part, str)]
        if error["type"] != "missing" and error["loc"]:
            key = f"{key}={_shown(names[-1] if names else '', error['input'])}"
        elif error["type"] in ("model_type", "dict_type"):  # the whole table is not one
            key = f"{key}={error['input']!r}"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{key}: {message}")
    return "; ".join(lines)


def _shown(key: str, value: object) -> str:
    """``value`` as an error may show it: ``***`` if ``key`` is named like a credential."""
    return "***" if any(word in key.lower() for word in _SECRET_WORDS) else repr(value)


def _check_table(where: str, table: Mapping[str, Any]) -> None:
    """The shape of a user's ``[presets.NAME]`` table, before it is merged with others."""
    for key in ("extends", "description"):
        if key in table and not isinstance(table[key], str):
            raise ConfigError(f"{where}.{key}={table[key]!r}: must be a string")
    for key in ("queues", "classes"):
        sub = table.get(key, {})
        if not isinstance(sub, Mapping):
            raise ConfigError(f"{where}.{key}={sub!r}: must be a table")
        for name, entry in sub.items():
            if not isinstance(entry, Mapping):
                raise ConfigError(f"{where}.{key}.{name}={entry!r}: must be a table")


def _resolve_preset(
    name: str,
    flat: Mapping[str, Any],
    config: AdmissionConfig,
) -> Preset:
    where = f"presets.{name}"
    unknown = set(flat) - QUEUE_KEYS - {"description", "queues", "classes", "extends"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"{where}.{key}={_shown(key, flat[key])}: not a preset key")
    defaults = {k: v for k, v in flat.items() if k in QUEUE_KEYS}
    _validated(QueuePolicyPatch, defaults, where)
    poll = config.poll_interval_seconds
    # The preset's own values first: a fault in them is named where it is written.
    default_queue = _queue_policy(where, [defaults], poll)
    overrides = {entry.name: entry.values() for entry in config.queues}
    for entry in config.queues:
        overrides[entry.name].pop("name", None)
    queue_tables: Mapping[str, Mapping[str, Any]] = flat.get("queues", {})
    names = set(queue_tables) | set(overrides)
    queues = {}
    for queue in sorted(names):
        table = queue_tables.get(queue, {})
        _validated(QueuePolicyPatch, table, f"{where}.queues.{queue}")
        if queue not in overrides:
            queues[queue] = _queue_policy(f"{where}.queues.{queue}", [defaults, table], poll)
            continue
        try:
            queues[queue] = _queue_policy(
                f"queues[{queue!r}]", [defaults, table, overrides[queue]], poll
            )
        except ConfigError:
            # Named in the preset's table if the fault is there, else in the queue entry.
            _queue_policy(f"{where}.queues.{queue}", [defaults, table], poll)
            raise
    classes: dict[str, ClassPolicy] = {}
    for class_name, class_table in flat.get("classes", {}).items():
        table = dict(class_table)
        class_entry = config.classes.get(class_name)
        if class_entry is not None:
            table.update(class_entry.model_dump(exclude_none=True))
        for level in ("normal", "warning", "critical"):
            if level in table:
                table[level] = _validated(
                    LevelLimits, table[level], f"{where}.classes.{class_name}.{level}"
                )
        classes[class_name] = _validated(ClassPolicy, table, f"{where}.classes.{class_name}")
    unknown_classes = set(config.classes) - set(classes)
    if unknown_classes:
        class_name = sorted(unknown_classes)[0]
        raise ConfigError(
            f"classes.{class_name}: not a workload class of preset {name!r} "
            f"(known: {', '.join(sorted(classes))})"
        )
    return Preset(
        name=name,
        description=str(flat.get("description", "")),
        default_queue=default_queue,
        queues=queues,
        classes=classes,
    )


def parse_config(
    data: Mapping[str, Any] | None = None, *, preset: str | None = None
) -> PolicyConfig:
    """Validate a configuration mapping (a parsed TOML file) and resolve its presets.

    ``preset`` (e.g. from ``ADMISSION_PRESET``) replaces the file's ``preset``.
    """
    config = _validated(AdmissionConfig, dict(data or {}), "config")
    raw = _builtin_raw()
    for name, table in config.presets.items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"presets.{name}={table!r}: must be a table")
        _check_table(f"presets.{name}", table)
        raw[name] = dict(table) if name not in raw else _extend(raw[name], table)
    presets = {name: _resolve_preset(name, _flatten(name, raw), config) for name in raw}
    for name in BUILTIN_NAMES:
        if name not in presets:  # pragma: no cover - the package ships them
            raise ConfigError(f"built-in preset {name!r} is missing")
    requested = preset if preset is not None else config.preset
    result = PolicyConfig(
        requested_preset=requested,
        poll_interval_seconds=config.poll_interval_seconds,
        queues=tuple(entry.name for entry in config.queues),
        presets=presets,
        telemetry=config.telemetry,
    )
    result.get_preset(requested)
    return result


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> PolicyConfig:
    """Load the configuration the way a deployment does.

    ``path`` (else ``ADMISSION_CONFIG``) names the TOML file, optional;
    ``ADMISSION_PRESET`` replaces its ``preset``.  ``environ`` stands in for
    ``os.environ`` (tests).
    """
    try:
        if environ is None:
            settings = AdmissionSettings()
        else:
            settings = AdmissionSettings.model_validate(
                {
                    k.removeprefix("ADMISSION_").lower(): v
                    for k, v in environ.items()
                    if k.startswith("ADMISSION_") and v
                }
            )
    except ValidationError as exc:
        raise ConfigError(_describe(exc, "ADMISSION", {})) from None
    file = Path(path) if path is not None else settings.config
    data: dict[str, Any] = {}
    if file is not None:
        where = "config file" if path is not None else "ADMISSION_CONFIG"
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{where}={str(file)!r}: no such file") from None
        except OSError as exc:  # a directory, no permission
            why = exc.strerror or type(exc).__name__
            raise ConfigError(f"{where}={str(file)!r}: cannot read it ({why})") from None
        except UnicodeDecodeError as exc:
            line = exc.object.count(b"\n", 0, exc.start) + 1
            column = exc.start - exc.object.rfind(b"\n", 0, exc.start)
            raise ConfigError(
                f"{file}: not valid TOML: not UTF-8, {exc.reason} (at line {line}, column {column})"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    return parse_config(data, preset=settings.preset or None)


def builtin_presets() -> dict[str, Preset]:
    """The shipped presets, resolved with default settings."""
    return dict(parse_config().presets)
