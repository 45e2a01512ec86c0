"""File names and values shown in messages, made safe for a terminal: names come from files a
user hands us (archive members, folder entries) and may hold escape sequences that would
recolour, retitle or clear the terminal. Every character that is not printable (control
characters, other non-printing code points, undecodable bytes) is written with Python's
``repr`` escapes (``\\x1b``, ``\\n``, ``\\udcff``); everything else is shown as is."""
from __future__ import annotations

import os


def printable(text) -> str:
    """``text`` (a str, path or bytes) with non-printable characters escaped repr-style."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    elif not isinstance(text, str):
        text = os.fspath(text) if isinstance(text, os.PathLike) else str(text)
        if isinstance(text, bytes):
            text = text.decode("utf-8", "surrogateescape")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def show_value(value) -> str:
    """A label or other scalar from a file, formatted without failing (inf, nan, complex and
    objects whose ``str`` raises are all shown)."""
    try:
        text = repr(value.item()) if hasattr(value, "item") and callable(value.item) else repr(value)
    except Exception:  # noqa: BLE001 - the message must not fail
        text = f"<{type(value).__name__}>"
    return printable(text[:60])
