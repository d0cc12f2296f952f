"""Writing results safely: check the destination before the work, write atomically after it."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ttrlab.errors import UserError


@contextlib.contextmanager
def reading(path: str | os.PathLike, what: str = "data file"):
    """Around the reading of a user's text file: bytes that are not UTF-8 (a Latin-1 or UTF-16
    export) and a file that cannot be read are one-line UserErrors naming the file."""
    try:
        yield
    except UnicodeDecodeError as error:
        raise UserError(f"{what} {str(path)!r} is not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset "
                        f"{error.start}); save it as UTF-8") from None
    except (PermissionError, IsADirectoryError) as error:
        raise UserError(f"{what} {str(path)!r} cannot be read: {error.strerror}") from None


def read_text(path: str | os.PathLike, what: str = "data file") -> str:
    """The UTF-8 text of a user's file (see `reading`)."""
    with reading(path, what):
        return Path(path).read_text(encoding="utf-8")


def check_writable_file(path: str | os.PathLike) -> Path:
    """Fail early (before hours of training) if `path` cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"output {str(path)!r} is a directory; give a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"output folder {str(parent)!r} does not exist")
    if (path.exists() and not os.access(path, os.W_OK)) or not _can_create_in(parent):
        raise UserError(f"output {str(path)!r} is not writable")
    return path


def _can_create_in(folder: Path) -> bool:
    """A real probe: permission bits say nothing for root or on read-only mounts."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".ttrlab-probe-")
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def check_writable_dir(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"output folder {str(path)!r} is a file")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not _can_create_in(probe):
        raise UserError(f"output folder {str(path)!r} is not writable")
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write via a temporary file in the same folder and rename: readers never see half a file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise UserError(f"output {str(path)!r} is not writable: {error.strerror}") from None
    try:
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes 0600; a result file is an ordinary file
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_json_atomic(path: str | os.PathLike, document: Any) -> Path:
    return write_text_atomic(path, json.dumps(document, indent=2, sort_keys=False) + "\n")
