"""The demo's script, pure: when files arrive, what they are, how long they take.

A scenario of ``duration`` seconds (600 by default) has phases laid out in
proportion to it: a quiet start with a trickle of files, a large drop of mixed
files into ``files-new_file`` (enough for the balanced preset's critical level,
sustained 60 s), a second, smaller burst (warning), a telemetry outage (the
monitor goes fail-safe, then recovers), and a quiet end in which the queues
drain and the cooldowns run out.  The counts are not scaled: a much shorter
duration leaves the preset's windows no time to run their course.

Nothing here reads a clock or does I/O: the pipeline plays the schedule.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "CONVERSION",
    "DEFAULT_DURATION",
    "DOCUMENTS",
    "EXTENSIONS",
    "NEW_FILE",
    "QUEUES",
    "TITUS",
    "Arrival",
    "FileKind",
    "FileRecord",
    "Phase",
    "Scenario",
    "Timing",
    "Window",
    "kind_of",
]

#: Seconds of scenario time the default demo plays.
DEFAULT_DURATION: Final = 600.0

NEW_FILE: Final = "files-new_file"
CONVERSION: Final = "files-document_conversion_input"
TITUS: Final = "titus-titus_input"
#: The pipeline's queues, in flow order (Nemesis's names).
QUEUES: Final = (NEW_FILE, CONVERSION, TITUS)


@dataclass(frozen=True, slots=True)
class FileKind:
    """An extension, how often it shows up, and where enrichment sends it next."""

    extension: str
    weight: int
    expensive: bool = False  # an archive or binary: the expensive enrichment class
    convert: bool = False  # a document: on to files-document_conversion_input
    scan: bool = False  # text worth scanning for secrets: on to titus-titus_input


#: The mix of a collected host's files (expensive: the balanced preset's list).
EXTENSIONS: Final = (
    FileKind(".txt", 14, scan=True),
    FileKind(".log", 8, scan=True),
    FileKind(".json", 6, scan=True),
    FileKind(".xml", 4, scan=True),
    FileKind(".ps1", 4, scan=True),
    FileKind(".config", 4, scan=True),
    FileKind(".csv", 5, scan=True),
    FileKind(".png", 10),
    FileKind(".jpg", 8),
    FileKind(".pdf", 5, convert=True, scan=True),
    FileKind(".docx", 4, convert=True, scan=True),
    FileKind(".xlsx", 3, convert=True),
    FileKind(".pptx", 2, convert=True),
    FileKind(".zip", 2, expensive=True),
    FileKind(".exe", 1, expensive=True),
    FileKind(".dll", 1, expensive=True),
    FileKind(".7z", 1, expensive=True),
    FileKind(".iso", 1, expensive=True),
)
#: A batch of office documents (the second burst): conversion work, mostly expensive.
DOCUMENTS: Final = tuple(kind for kind in EXTENSIONS if kind.convert)

_BY_EXTENSION: Final = {kind.extension: kind for kind in EXTENSIONS}
_OTHER: Final = FileKind("", 0)


def kind_of(path: str) -> FileKind:
    """The kind of a file by its extension (an unknown one: neither expensive nor routed on)."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1].lower()
    dot = name.rfind(".")
    return _BY_EXTENSION.get(name[dot:], _OTHER) if dot > 0 else _OTHER


_HOSTS: Final = ("WS-0142", "WS-0177", "SRV-FILES01", "DC01")
_FOLDERS: Final = ("Users/alice/Documents", "Users/bob/Downloads", "ProgramData", "inetpub/wwwroot")


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One collected file, as producers publish it (``data`` of a CloudEvent)."""

    id: int
    path: str
    kind: FileKind

    def to_data(self) -> dict[str, object]:
        return {"object_id": f"file-{self.id:05d}", "path": self.path}


@dataclass(frozen=True, slots=True)
class Arrival:
    """A file published to ``files-new_file`` at scenario time ``at``, during ``phase``."""

    at: float
    phase: str
    file: FileRecord


@dataclass(frozen=True, slots=True)
class Window:
    """``[start, end)`` in scenario seconds."""

    start: float
    end: float

    def __contains__(self, t: object) -> bool:
        return isinstance(t, int | float) and self.start <= t < self.end


@dataclass(frozen=True, slots=True)
class Phase:
    """A stretch of the script: ``files`` of ``mix`` arrive spread evenly over ``window``."""

    name: str
    window: Window
    files: int
    description: str
    mix: tuple[FileKind, ...] = EXTENSIONS


@dataclass(frozen=True, slots=True)
class Timing:
    """Mean seconds of work per file at each stage (each file varies by +-30%)."""

    enrich_standard: float = 0.35
    enrich_expensive: float = 1.2
    convert_standard: float = 0.6
    convert_expensive: float = 1.0
    scan: float = 0.25


@dataclass(frozen=True, slots=True)
class Scenario:
    """The schedule of a demo run (see the module docstring).  Build it with :meth:`build`."""

    duration: float
    phases: tuple[Phase, ...]
    outage: Window
    timing: Timing = field(default_factory=Timing)
    seed: int = 6

    @classmethod
    def build(cls, duration: float = DEFAULT_DURATION, *, seed: int = 6) -> Scenario:
        """The default script stretched to ``duration`` seconds (phases in proportion)."""
        if isinstance(duration, bool) or not (
            isinstance(duration, int | float) and math.isfinite(duration) and duration > 0
        ):
            raise ValueError(f"duration must be a finite number of seconds > 0, got {duration!r}")
        k = float(duration) / DEFAULT_DURATION

        def window(start: float, end: float) -> Window:
            return Window(start * k, end * k)

        phases = (
            Phase("quiet", window(0, 30), 9, "a trickle of files: every queue normal"),
            Phase("drop", window(30, 40), 650, "a large drop of mixed files into files-new_file"),
            Phase("drain", window(40, 265), 50, "the drop drains: critical, then the cooldown"),
            Phase(
                "documents",
                window(265, 295),
                120,
                "a second burst, of office documents: conversion backs up",
                DOCUMENTS,
            ),
            Phase("drain", window(295, 395), 15, "the documents convert"),
            Phase("outage", window(395, 425), 10, "telemetry outage: the monitor is blind"),
            Phase("recovery", window(425, 540), 30, "telemetry is back: fail-safe until it holds"),
            Phase("quiet", window(540, 600), 0, "no new files: the queues drain, levels settle"),
        )
        return cls(float(duration), phases, window(395, 425), seed=seed)

    def phase_at(self, t: float) -> Phase:
        """The phase running at scenario time ``t`` (the last one past the end)."""
        for phase in self.phases:
            if t in phase.window:
                return phase
        return self.phases[-1] if t >= self.duration else self.phases[0]

    @property
    def total_files(self) -> int:
        return sum(phase.files for phase in self.phases)

    def arrivals(self) -> Iterator[Arrival]:
        """Every file of the script, in time order (the same files on every call)."""
        rng = random.Random(self.seed)
        number = 0
        for phase in self.phases:
            weights = [kind.weight for kind in phase.mix]
            span = phase.window.end - phase.window.start
            for i in range(phase.files):
                number += 1
                kind = rng.choices(phase.mix, weights)[0]
                host, folder = rng.choice(_HOSTS), rng.choice(_FOLDERS)
                path = f"/collected/{host}/{folder}/item-{number:05d}{kind.extension}"
                at = phase.window.start + span * i / phase.files
                yield Arrival(at, phase.name, FileRecord(number, path, kind))

    def work_seconds(self, stage: str, file_id: int, *, expensive: bool = False) -> float:
        """Seconds ``stage`` (enrich, convert, scan) spends on file ``file_id``."""
        timing = self.timing
        if stage == "enrich":
            mean = timing.enrich_expensive if expensive else timing.enrich_standard
        elif stage == "convert":
            mean = timing.convert_expensive if expensive else timing.convert_standard
        elif stage == "scan":
            mean = timing.scan
        else:
            raise ValueError(f"stage must be 'enrich', 'convert' or 'scan', got {stage!r}")
        # A fixed spread per file: the same file takes the same time on every run.
        spread = ((file_id * 2654435761) % 1000) / 1000.0  # in [0, 1)
        return mean * (0.7 + 0.6 * spread)
