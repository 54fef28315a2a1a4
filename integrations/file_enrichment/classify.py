"""Which workload class a file event belongs to: by the extension of its path.

``event.data`` carries the file record (an attribute or a ``"data"`` key) and the
record its ``path`` (an attribute or a ``"path"`` key), as Dapr CloudEvents and
Nemesis file records do.  A path is matched case-insensitively on its last
component, whichever separator it uses (Nemesis collects Windows hosts), so
``C:\\Temp\\SETUP.EXE`` is expensive and multi-part extensions such as
``.tar.gz`` match when listed.

An event without a usable path goes to ``standard``: the gate controls admission,
it does not validate records, so it never withholds (or loops) an event the
handler may know how to treat.  It is logged once per event as a warning naming
the field and the value.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from admission import events
from admission.registry import Registry

__all__ = [
    "EXPENSIVE",
    "STANDARD",
    "UNCLASSIFIED",
    "FileClassifier",
    "event_path",
    "normalize_extensions",
]

STANDARD = "standard"
EXPENSIVE = "expensive"

#: The structlog event for an event whose path could not be read.
UNCLASSIFIED = "admission.file_enrichment.unclassified"

_MISSING = object()


def normalize_extensions(
    extensions: Iterable[str], *, field: str = "extensions"
) -> tuple[str, ...]:
    """Lower-case, dot-prefixed, de-duplicated extensions; a bad entry is a ``ValueError``."""
    if isinstance(extensions, str):
        raise TypeError(f"{field} must be a list of extensions, got the string {extensions!r}")
    found: dict[str, None] = {}
    for index, raw in enumerate(extensions):
        if not isinstance(raw, str):
            raise TypeError(f"{field}[{index}]={raw!r}: an extension must be a string")
        ext = raw.strip().lower()
        if ext and not ext.startswith("."):
            ext = f".{ext}"
        if len(ext) < 2 or "/" in ext or "\\" in ext or ext.endswith("."):
            raise ValueError(f"{field}[{index}]={raw!r}: not a file extension (e.g. '.zip')")
        found[ext] = None
    return tuple(found)


def _field(value: object, name: str) -> object:
    if isinstance(value, Mapping):
        return value.get(name, _MISSING)
    return getattr(value, name, _MISSING)


def event_path(event: object) -> tuple[str | None, str | None]:
    """``(path, problem)``: the event's file path, or ``None`` and why there is none."""
    data = _field(event, "data")
    if data is _MISSING or data is None:
        return None, f"event.data is missing (event={_short(event)})"
    path = _field(data, "path")
    if path is _MISSING or path is None:
        return None, f"event.data.path is missing (event.data={_short(data)})"
    if isinstance(path, bytes):
        path = path.decode("utf-8", "surrogateescape")
    elif isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        return None, f"event.data.path={_short(path)}: not a file path"
    if not path.strip():
        return None, f"event.data.path={path!r}: empty"
    return path, None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else f"{text[:117]}..."


class FileClassifier:
    """``classifier(event) -> "expensive" | "standard"`` by the extension of ``event.data.path``."""

    __slots__ = ("expensive", "extensions", "standard")

    def __init__(
        self, extensions: Iterable[str], *, expensive: str = EXPENSIVE, standard: str = STANDARD
    ) -> None:
        self.extensions = normalize_extensions(extensions)
        self.expensive = expensive
        self.standard = standard

    @classmethod
    def from_registry(cls, registry: Registry) -> FileClassifier:
        """The extensions of the ``expensive`` class in the registry's preset (config included)."""
        policy = registry.engine.preset.classes.get(EXPENSIVE)
        where = f"presets.{registry.engine.preset.name}.classes.{EXPENSIVE}.extensions"
        return cls(normalize_extensions(policy.extensions if policy else (), field=where))

    def classify_path(self, path: str) -> str:
        """The class of a file path (its last component, either separator, any case)."""
        name = path.strip().replace("\\", "/").rsplit("/", 1)[-1].lower()
        for ext in self.extensions:
            # A bare dotfile named like the extension (".zip") has no extension.
            if name.endswith(ext) and len(name) > len(ext):
                return self.expensive
        return self.standard

    def __call__(self, event: object) -> str:
        path, problem = event_path(event)
        if path is None:
            events.logger().warning(UNCLASSIFIED, workload_class=self.standard, problem=problem)
            return self.standard
        return self.classify_path(path)

    def __repr__(self) -> str:
        return f"FileClassifier({list(self.extensions)!r})"
