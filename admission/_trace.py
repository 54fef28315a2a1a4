"""Reading a recorded queue trace: a CSV file, or rows built in code.

The format (``shared/fixtures/traces/rabbitmq-burst.csv``): a header, then one row
per queue per sample::

    t,queue,messages_ready,messages_unacknowledged,consumers,publish_rate,deliver_get_rate,ack_rate

``t`` (seconds, any origin) and ``queue`` are required in every row; the other
cells may be empty, which means the broker reported no value (unknown, never
zero).  ``t``, ``queue`` and ``messages_ready`` must be columns of the header;
the others are optional columns, and so is ``oldest_message_age_seconds`` (for
the ``oldest_message_age`` signal).  Columns with other names are ignored.

Rows need not be sorted: they are ordered by ``t`` (file order among equal
``t``).  Every problem is a :class:`TraceError` naming the file, the line and
the cell.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from admission.errors import AdmissionError
from admission.policy.samples import QueueSample

__all__ = ["COLUMNS", "REQUIRED", "Trace", "TraceError", "TraceRow", "load_trace"]

#: The columns read, in the order of the recorded traces.
COLUMNS = (
    "t",
    "queue",
    "messages_ready",
    "messages_unacknowledged",
    "consumers",
    "publish_rate",
    "deliver_get_rate",
    "ack_rate",
    "oldest_message_age_seconds",
)
REQUIRED = ("t", "queue", "messages_ready")
_COUNTS = frozenset({"messages_ready", "messages_unacknowledged", "consumers"})

TraceSource = str | os.PathLike[str] | Iterable[Mapping[str, object]]


class TraceError(AdmissionError, ValueError):
    """The trace cannot be read; the message names the file (or row), the line and the cell."""


class TraceRow(NamedTuple):
    """One row: its time, its queue, where it came from and its reading.

    ``sample`` is ``None`` when the row's ``messages_ready`` cell is empty: the
    broker gave no reading, which a replay counts as a failed read.
    """

    t: float
    queue: str
    line: int
    sample: QueueSample | None


@dataclass(frozen=True, slots=True)
class Trace:
    """A parsed trace: rows ordered by ``t``, and the queues in order of first appearance."""

    source: str
    rows: tuple[TraceRow, ...]
    queues: tuple[str, ...]

    @property
    def start(self) -> float:
        return self.rows[0].t

    @property
    def end(self) -> float:
        return self.rows[-1].t


def load_trace(trace: Trace | TraceSource) -> Trace:
    """Parse ``trace``: a :class:`Trace` (returned as is), a CSV path, or rows.

    Rows are mappings from column name to a cell (a string as in a CSV file, a
    number, or ``None``/``""`` for unknown), e.g. ``csv.DictReader`` output.
    """
    if isinstance(trace, Trace):
        return trace
    if isinstance(trace, str | os.PathLike):
        return _read_file(Path(trace))
    return _finish("<rows>", _from_mappings(trace))


# -- files ----------------------------------------------------------------------


def _read_file(path: Path) -> Trace:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = _from_csv(str(path), handle)
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TraceError(f"{path}: is a directory, not a CSV file") from None
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise TraceError(f"{path}: not valid CSV ({exc})") from None
    except OSError as exc:
        raise TraceError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return _finish(str(path), rows)


def _header(source: str, header: Sequence[str] | None) -> dict[str, int]:
    if header is None:
        names = ",".join(COLUMNS[:8])
        raise TraceError(f"{source}: the file is empty (expected a header: {names})")
    index: dict[str, int] = {}
    for position, raw in enumerate(header):
        name = raw.strip().lstrip("\ufeff")
        if name in index:
            raise TraceError(f"{source}:1: column {name!r} appears twice in the header")
        index[name] = position
    missing = [name for name in REQUIRED if name not in index]
    if missing:
        raise TraceError(
            f"{source}:1: the header lacks the column(s) {', '.join(missing)} "
            f"(header: {','.join(h.strip() for h in header)})"
        )
    return index


def _from_csv(source: str, handle: Iterable[str]) -> list[TraceRow]:
    reader = csv.reader(handle)
    index = _header(source, next(reader, None))
    width = len(index)
    # An absent optional column reads as the empty cell appended to every row.
    positions = [index.get(name, width) for name in COLUMNS]
    it, iq, ir, iu, ic, ip, id_, ia, io = positions
    rows: list[TraceRow] = []
    append = rows.append
    for cells in reader:
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue  # a blank line
        line = reader.line_num
        if len(cells) != width:
            raise TraceError(f"{source}:{line}: expected {width} cells, got {len(cells)}")
        cells.append("")
        try:  # the fast path: well-formed cells (inlined: this runs once per row)
            t = float(cells[it])
            queue = cells[iq]
            if not queue or not math.isfinite(t):
                raise ValueError
            sample = None
            if ready := cells[ir]:
                sample = QueueSample(
                    queue,
                    t,
                    int(ready),
                    int(c) if (c := cells[iu]) else None,
                    int(c) if (c := cells[ic]) else None,
                    float(c) if (c := cells[ip]) else None,
                    float(c) if (c := cells[id_]) else None,
                    float(c) if (c := cells[ia]) else None,
                    float(c) if (c := cells[io]) else None,
                )
        except (ValueError, TypeError):  # find the cell at fault and say so
            picked = {name: cells[i] for name, i in zip(COLUMNS, positions, strict=True)}
            t, queue, sample = _careful(f"{source}:{line}", picked)
        append(TraceRow(t, queue, line, sample))
    return rows


# -- rows given in code, and the careful path ----------------------------------


def _from_mappings(rows: Iterable[Mapping[str, object]]) -> list[TraceRow]:
    out: list[TraceRow] = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise TraceError(f"row {number}: expected a mapping of column to cell, got {row!r}")
        missing = [name for name in REQUIRED if name not in row]
        if missing:
            raise TraceError(f"row {number}: lacks the column(s) {', '.join(missing)}")
        t, queue, sample = _careful(f"row {number}", row)
        out.append(TraceRow(t, queue, number, sample))
    return out


def _careful(where: str, row: Mapping[str, object]) -> tuple[float, str, QueueSample | None]:
    t = _number(where, "t", row.get("t"))
    if t is None:
        raise TraceError(f"{where}: t is empty (every row needs its time)")
    queue = row.get("queue")
    if not isinstance(queue, str) or not queue.strip():
        raise TraceError(f"{where}: queue={queue!r} is not a queue name")
    values = {name: _number(where, name, row.get(name)) for name in COLUMNS[2:]}
    ready = values["messages_ready"]
    if ready is None:
        return t, queue, None
    unacked, consumers = values["messages_unacknowledged"], values["consumers"]
    try:
        sample = QueueSample(
            queue,
            t,
            int(ready),
            None if unacked is None else int(unacked),
            None if consumers is None else int(consumers),
            values["publish_rate"],
            values["deliver_get_rate"],
            values["ack_rate"],
            values["oldest_message_age_seconds"],
        )
    except (ValueError, TypeError) as exc:
        raise TraceError(f"{where}: {exc}") from None
    return t, queue, sample


def _number(where: str, column: str, cell: object) -> float | None:
    if cell is None or (isinstance(cell, str) and not cell.strip()):
        return None
    if isinstance(cell, bool) or not isinstance(cell, str | int | float):
        raise TraceError(f"{where}: {column}={cell!r} is not a number")
    try:
        value = float(cell)
    except ValueError:
        raise TraceError(f"{where}: {column}={cell!r} is not a number") from None
    if not math.isfinite(value):
        raise TraceError(f"{where}: {column}={cell!r} is not a finite number")
    if value < 0 and column != "t":
        raise TraceError(f"{where}: {column}={cell!r} is negative")
    if column in _COUNTS and not value.is_integer():
        raise TraceError(f"{where}: {column}={cell!r} is not a whole number")
    return value


def _finish(source: str, rows: list[TraceRow]) -> Trace:
    if not rows:
        raise TraceError(f"{source}: the trace has no rows")
    if any(rows[i].t > rows[i + 1].t for i in range(len(rows) - 1)):
        rows.sort(key=lambda row: row.t)  # stable: file order among equal t
    queues = tuple(dict.fromkeys(row.queue for row in rows))
    return Trace(source, tuple(rows), queues)
