"""URLs that may carry credentials (``scheme://user:password@host/...``): split and masked.

Passwords are often pasted unencoded, with ``/``, ``?``, ``#`` or ``@`` in them;
``urlsplit`` then ends the authority at the first of those and leaves the rest
of the password in the "path", where no masking looks.  Here a ``user:`` followed
by an ``@`` anywhere later is userinfo up to the LAST ``@``, so the whole
password is found (and masked) wherever it ends.  A path with ``:`` and ``@`` in
it may be masked too: showing too little beats showing a password.
"""

from __future__ import annotations

__all__ = ["mask_url", "split_userinfo"]


def split_userinfo(url: str) -> tuple[str | None, str | None, str]:
    """``(user, password, url without them)``; user and password as written (still %-quoted).

    ``None`` for what the URL does not have (no ``@``: no user; no ``:`` in the
    userinfo: no password).
    """
    scheme, sep, rest = url.partition("://")
    head, at, tail = rest.rpartition("@")
    if not (sep and at):
        return None, None, url
    ends = [i for i in (rest.find(c) for c in "/?#") if i >= 0]
    in_authority = len(head) < min(ends, default=len(rest))
    user, colon, password = head.partition(":")
    if not in_authority and not (colon and not any(c in user for c in "/?#")):
        return None, None, url  # an '@' in the path of a URL without userinfo
    return user, (password if colon else None), f"{scheme}://{tail}"


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    user, password, bare = split_userinfo(url)
    if password is None:
        return url
    scheme, _, rest = bare.partition("://")
    return f"{scheme}://{user}:***@{rest}"
