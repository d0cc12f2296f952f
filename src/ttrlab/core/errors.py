"""The one error type users see: a bad value, named, with what is allowed.

The CLI turns a `UserError` into one line on stderr and exit code 2; everything else is a bug
and keeps its traceback.
"""
from __future__ import annotations

import difflib
import reprlib
import sys
from collections.abc import Iterable


class UserError(ValueError):
    """Bad input from the user (a name, a value, a file). The message is one line."""


def shown(value, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters: a message names a bad value without printing a
    huge one (a 10 MB string, a list that a YAML alias blew up)."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = limit
    short.maxlist = short.maxdict = 8
    short.maxlevel = 3
    text = short.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def first_line(error: BaseException) -> str:
    """A library error's message for a one-line UserError: its first line, or its type's name
    when it has no message."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def did_you_mean(value: str, allowed: Iterable[str]) -> str:
    """' (did you mean 'sst2'?)' when a close match exists, else ''."""
    matches = difflib.get_close_matches(str(value), list(allowed), n=1, cutoff=0.5)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def unknown_name(kind: str, value: str, allowed: Iterable[str]) -> UserError:
    allowed = sorted(allowed)
    return UserError(
        f"unknown {kind} {shown(value)}{did_you_mean(value, allowed)}; allowed: {', '.join(allowed)}"
    )


def warning(message: str) -> None:
    """Tell the user that what a command produced may not mean what it seems (a model that did
    not learn its task): one line on stderr; the command still succeeds."""
    print(f"ttrlab: warning: {message}", file=sys.stderr)


def note(message: str) -> None:
    """Tell the user something they should know about a command that still does its work (a
    database read as immutable, a damaged row left out): one line on stderr."""
    print(f"ttrlab: note: {message}", file=sys.stderr)
