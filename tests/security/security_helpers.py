"""What the security tests share: distinctive secrets, a collector of everything
the library lets out (log lines, reprs, messages, bodies), and the kernel's view of
a listening socket.

``Seen`` keeps every piece of text with a label saying where it came from;
``assert_clean`` fails naming the secret and the place if any secret, in any of
the forms it travels in (as is, URL-quoted, inside HTTP basic auth), is in one.
"""

from __future__ import annotations

import base64
import logging
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

#: Each secret is distinctive, so a hit is never a coincidence.
MGMT_PASSWORD = "mgmt-pw-7Kq2x9Zr"
URL_PASSWORD = "url-pw/3Ht8@Lm1Q"  # needs quoting in a URL
AMQP_PASSWORD = "amqp-pw-9Vb4Nc6S"
REDIS_PASSWORD = "redis-pw-2Xw5Jd8F"
REDIS_RIGHT_PASSWORD = "redis-right-5Tn8Wq3K"
API_TOKEN = "api-token-6Rm3Kp0W"
ENV_TOKEN = "env-token-4Ls7Qy2E"
FILE_PASSWORD = "file-pw-8Gh1Tz5U"
SECRETS = {
    "RabbitMQ management password": MGMT_PASSWORD,
    "password in a management URL": URL_PASSWORD,
    "AMQP password": AMQP_PASSWORD,
    "Redis password": REDIS_PASSWORD,
    "Redis password (the right one)": REDIS_RIGHT_PASSWORD,
    "API token": API_TOKEN,
    "ADMISSION_API_TOKEN": ENV_TOKEN,
    "password in the config file": FILE_PASSWORD,
}
USERS = ("guest", "admin", "op", "")


def forms() -> dict[str, str]:
    """Every form a secret may leak in: as is, URL-quoted, in a basic-auth header."""
    found = {}
    for name, secret in SECRETS.items():
        found[name] = secret
        found[f"{name} (URL-quoted)"] = quote(secret, safe="")
        for user in USERS:
            token = base64.b64encode(f"{user}:{secret}".encode()).decode()
            found[f"{name} (basic auth of {user!r})"] = token
    return found


@dataclass
class Seen:
    """Everything the library showed, labelled by where it was seen."""

    texts: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, *items: object) -> None:
        for item in items:
            if isinstance(item, str):
                self.texts.append((where, item))
            elif isinstance(item, bytes):
                self.texts.append((where, item.decode("utf-8", "replace")))
            else:
                self.texts.append((f"repr({where})", repr(item)))
                self.texts.append((f"str({where})", str(item)))

    def error(self, where: str, exc: BaseException) -> None:
        """The exception, its cause and context chain, and its formatted traceback."""
        seen: set[int] = set()
        link: BaseException | None = exc
        while link is not None and id(link) not in seen:
            seen.add(id(link))
            self.add(f"{where}: {type(link).__name__}", link)
            self.add(f"{where}: args", *map(repr, link.args))
            link = link.__cause__ or link.__context__
        self.add(f"{where}: traceback", "".join(traceback.format_exception(exc)))

    def logs(
        self, where: str, events: Sequence[Mapping[str, Any]], caplog: pytest.LogCaptureFixture
    ) -> None:
        """structlog's captured events and every stdlib record (formatted, tracebacks too)."""
        for event in events:
            self.add(f"{where}: structlog {event.get('event')}", repr(event))
            exc = event.get("exc_info")
            if isinstance(exc, BaseException):
                self.error(f"{where}: structlog {event.get('event')} exc_info", exc)
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        for record in caplog.records:
            self.add(f"{where}: log {record.name}", formatter.format(record))

    def assert_clean(self) -> None:
        assert self.texts, "nothing was collected"
        leaks = [
            f"{name} in {where}: ...{text[max(0, text.find(form) - 60) : text.find(form) + 60]}..."
            for where, text in self.texts
            for name, form in forms().items()
            if form in text
        ]
        assert not leaks, "\n".join(leaks)


def listening(port: int) -> set[str]:
    """The local addresses the kernel has a socket listening on ``port`` at (IPv4 and IPv6)."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp: the kernel's socket table is read on Linux only")
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.add(_address(address, width))
    return found


def _address(hexed: str, width: int) -> str:
    if width == 8:  # one little-endian 32-bit word
        return ".".join(str(b) for b in reversed(bytes.fromhex(hexed)))
    words = [bytes.fromhex(hexed[i : i + 8])[::-1].hex() for i in range(0, 32, 8)]
    groups = "".join(words)
    return ":".join(groups[i : i + 4] for i in range(0, 32, 4))
