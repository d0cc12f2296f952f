"""Files ttrlab reads and writes, under one policy.

Paths. A path a user names (a flag, a spec value, a task file's data file) is checked by
`user_path` before anything touches it: a NUL byte, a name over 255 bytes or a path over 4095
bytes is a one-line error, and `path_errors` turns every OSError a path raises (a symlink loop,
a permission, a folder where a file should be) into one line naming the path.

Outputs. An output is a regular file, or a folder that ttrlab creates or owns:

- `check_output_file`: a file output may be new or an existing regular file; a device, FIFO,
  socket, folder or symbolic link at that path is refused (replacing `/dev/null` or a link
  would change something the user did not name as an output).
- `check_output_folder`: a folder output may be new, empty, or one ttrlab wrote before (it holds
  the marker `OWNED_MARKER`); a folder holding anything else is refused, so a user's own files
  of the same names are never replaced.
- `check_distinct`: no two outputs of one command overlap (checked before any work).
- `check_free_space`: where the size of an output is known, the disk must hold it before the
  work that makes it starts.
- `write_bytes_atomic` (and the text, JSON and figure forms): a temporary file in the same folder,
  fsync, then a rename, so a reader (or a SIGKILL) never leaves half a file; the destination is
  checked again just before the rename. A write that fails is one line; with `rescue` the content
  is first kept in a file of the temporary folder (else home, else the working folder) that the
  line names, so a full disk does not lose a finished run.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ttrlab.core.errors import UserError, shown

NAME_MAX = 255  # bytes in one file name (Linux, macOS, Windows filesystems alike)
PATH_MAX = 4095  # bytes in a whole path (Linux's limit, less the terminating NUL)
OWNED_MARKER = ".ttrlab-output"
MIN_FREE_BYTES = 1 << 20  # what a result document needs at most, short of learning curves of huge runs


# ---- paths a user names -----------------------------------------------------------------------
@contextlib.contextmanager
def build_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on building `folder` (a stored stage: one process builds it, another
    that needs it waits, then finds it built). The lock file sits beside the folder, so the folder
    itself appears only whole (moved in by its builder)."""
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def user_path(value: str | os.PathLike, what: str) -> Path:
    """`value` as a Path (`~` expanded), or a one-line UserError for a string no filesystem
    can hold: a NUL byte, a name longer than NAME_MAX bytes, a path longer than PATH_MAX."""
    text = os.fspath(value)
    if not isinstance(text, str):
        text = os.fsdecode(text)
    if "\x00" in text:
        raise UserError(f"{what} {shown(text)} contains a NUL byte, which no path can hold")
    try:
        encoded = os.fsencode(text)
    except UnicodeEncodeError:
        raise UserError(f"{what} {shown(text)} holds characters this system cannot use in a file name") from None
    longest = max((len(part) for part in encoded.split(b"/")), default=0)
    if longest > NAME_MAX:
        raise UserError(f"{what} {shown(text)} has a name of {longest} bytes; a file name may be at most "
                        f"{NAME_MAX} bytes")
    if len(encoded) > PATH_MAX:
        raise UserError(f"{what} {shown(text)} is {len(encoded)} bytes long; a path may be at most {PATH_MAX} bytes")
    try:
        return Path(text).expanduser()
    except RuntimeError:  # '~name' of no user: a shell leaves it as it is, and so does ttrlab
        return Path(text)


def path_problem(error: BaseException) -> str:
    """What went wrong with a path, in words (an OSError's strerror; a symlink loop pathlib found)."""
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    text = str(error)
    return "a loop of symbolic links" if "Symlink loop" in text else text or type(error).__name__


@contextlib.contextmanager
def path_errors(what: str, path: str | os.PathLike, problem: str = "") -> Iterator[None]:
    """Around any use of `path`: an OSError (or pathlib's RuntimeError for a symlink loop) is a
    one-line UserError naming `what` and the path (then `problem`, e.g. "cannot be read")."""
    try:
        yield
    except OSError as error:
        raise UserError(f"{what} {str(path)!r}{' ' + problem if problem else ''}: {path_problem(error)}") from None
    except RuntimeError as error:
        if "Symlink loop" not in str(error):
            raise
        raise UserError(f"{what} {str(path)!r}{' ' + problem if problem else ''}: {path_problem(error)}") from None


@contextlib.contextmanager
def reading(path: str | os.PathLike, what: str = "data file"):
    """Around the reading of a user's text file: bytes that are not UTF-8 (a Latin-1 or UTF-16
    export) and a file that cannot be read are one-line UserErrors naming the file (never its
    content)."""
    try:
        with path_errors(what, path, "cannot be read"):
            yield
    except UnicodeDecodeError as error:
        raise UserError(f"{what} {str(path)!r} is not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset "
                        f"{error.start}); save it as UTF-8") from None


def read_text(path: str | os.PathLike, what: str = "data file") -> str:
    """The UTF-8 text of a user's file (see `reading`)."""
    path = user_path(path, what)
    with reading(path, what):
        return path.read_text(encoding="utf-8")


# ---- outputs: what may be written where -------------------------------------------------------
_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"))


def _what_is_there(path: Path) -> str | None:
    """None when nothing or a regular file is at `path` (what an output may replace); else what
    is there, in words (the link itself, not its target)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _refuse_unless_regular(path: Path, what: str) -> None:
    there = _what_is_there(path)
    if there == "a directory":
        raise UserError(f"{what} {str(path)!r} is a directory; give a file path")
    if there is not None:
        raise UserError(f"{what} {str(path)!r} is {there}; ttrlab replaces only regular files: give a new file "
                        "path or an existing regular file")


def check_output_file(path: str | os.PathLike, what: str = "output") -> Path:
    """Fail early (before hours of training) if `path` is not a file ttrlab may write: see the
    module docstring. Returns it as a Path."""
    if os.fspath(path).endswith(os.sep):  # Path() would drop the slash and write a file of that name
        raise UserError(f"{what} {shown(os.fspath(path))} ends with {os.sep!r}, a folder; give a file path")
    path = user_path(path, what)
    with path_errors(what, path):
        _refuse_unless_regular(path, what)
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise UserError(f"output folder {str(parent)!r} does not exist")
        if (path.exists() and not os.access(path, os.W_OK)) or not _can_create_in(parent):
            raise UserError(f"{what} {str(path)!r} is not writable")
    return path



def check_output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Fail early if `path` is not a folder ttrlab may write into: it must not exist yet, be empty,
    or hold the marker of an earlier ttrlab output (`OWNED_MARKER`). Creates nothing."""
    path = user_path(path, what)
    with path_errors(what, path):
        if os.path.lexists(path) and not path.is_dir():
            raise UserError(f"{what} {str(path)!r} is {_what_is_there(path) or 'a file'}; give a folder path")
        if path.is_dir():
            entries = sorted(os.listdir(path))
            if entries and OWNED_MARKER not in entries:
                names = ", ".join(shown(name, 40) for name in entries[:3]) + (", ..." if len(entries) > 3 else "")
                raise UserError(f"{what} {str(path)!r} holds files ttrlab did not write ({names}); give a new or "
                                f"empty folder, or one ttrlab wrote before")
        probe = path
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir() or not _can_create_in(probe):
            raise UserError(f"{what} {str(path)!r} is not writable")
    return path


def check_writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """A folder ttrlab keeps adding to and reads back (checkpoints): it may hold anything, but it
    must be a folder, or creatable, and writable."""
    path = user_path(path, what)
    with path_errors(what, path):
        if os.path.lexists(path) and not path.is_dir():
            raise UserError(f"{what} {str(path)!r} is a file")
        probe = path
        while not probe.exists():
            probe = probe.parent
        if not _can_create_in(probe):
            raise UserError(f"{what} {str(path)!r} is not writable")
    return path


def own_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create `path` if needed and mark it as ttrlab's (after `check_output_folder` said it may)."""
    path = check_output_folder(path, what)
    with path_errors(what, path):
        path.mkdir(parents=True, exist_ok=True)
        marker = path / OWNED_MARKER
        if not marker.exists():
            marker.write_text(f"ttrlab wrote this folder ({what}); a later ttrlab command may replace the files in it.\n",
                              encoding="utf-8")
    return path


def check_distinct(outputs: Mapping[str, tuple[str | os.PathLike | None, bool]]) -> None:
    """{flag: (path, is_folder)}: no output may be another, or lie inside an output folder (the
    second write would destroy the first, after the work). Unset (None) outputs are skipped."""
    given = [(flag, Path(os.path.realpath(os.path.abspath(path))), folder)
             for flag, (path, folder) in outputs.items() if path is not None]
    for i, (flag_a, a, folder_a) in enumerate(given):
        for flag_b, b, folder_b in given[i + 1:]:
            if a == b or (folder_a and b.is_relative_to(a)) or (folder_b and a.is_relative_to(b)):
                raise UserError(f"{flag_a} {str(outputs[flag_a][0])!r} and {flag_b} {str(outputs[flag_b][0])!r} "
                                "overlap; give each output its own path")


def check_free_space(path: str | os.PathLike, needed: int, what: str = "output") -> None:
    """UserError when the disk that would hold `path` has less than `needed` bytes free."""
    probe = Path(os.path.abspath(path))
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise UserError(f"{what} {str(path)!r}: its disk has {_mib(free)} free, {_mib(needed)} needed; "
                        "free some space or write it elsewhere")


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _can_create_in(folder: Path) -> bool:
    """A real probe: permission bits say nothing for root or on read-only mounts."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".ttrlab-probe-")
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


# ---- outputs: writing -------------------------------------------------------------------------
def write_bytes_atomic(path: str | os.PathLike, data: bytes, what: str = "output", rescue: bool = False) -> Path:
    """Write via a temporary file in the same folder, fsync and rename: readers never see half a
    file. A failure (a full disk, a folder gone read-only) is one line; with `rescue` the data is
    kept elsewhere first and the line says where."""
    path = Path(path)
    temp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:200]}.", suffix=".tmp")
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes 0600; a result file is an ordinary file
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _refuse_unless_regular(path, what)  # again: something may have appeared there meanwhile
        os.replace(temp, path)
        temp = None
    except OSError as error:
        raise UserError(f"cannot write {what} {str(path)!r}: {path_problem(error)}{_rescued(data, path, rescue)}") from None
    except UserError as refused:
        raise UserError(f"{refused}{_rescued(data, path, rescue)}") from None
    finally:
        if temp is not None:
            Path(temp).unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | os.PathLike, text: str, what: str = "output", rescue: bool = False) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), what, rescue)


def write_json_atomic(path: str | os.PathLike, document: Any, what: str = "output", rescue: bool = False) -> Path:
    return write_text_atomic(path, json.dumps(document, indent=2, sort_keys=False) + "\n", what, rescue)


def figure_formats() -> dict[str, str]:
    """{extension: description} of the figure files matplotlib can write here."""
    from matplotlib.backend_bases import FigureCanvasBase

    return dict(FigureCanvasBase.get_supported_filetypes())


def check_figure_file(path: str | os.PathLike, what: str = "figure") -> Path:
    """`check_output_file`, and an extension matplotlib can write (checked before the work)."""
    path = check_output_file(path, what)
    extension = path.suffix.lower().lstrip(".")
    formats = figure_formats()
    if extension not in formats:
        raise UserError(f"{what} {str(path)!r}: unsupported figure format {extension or 'none'!r}; allowed: "
                        f"{', '.join(sorted(formats))}")
    return path


def save_figure(fig, path: str | os.PathLike, what: str = "figure", **options: Any) -> Path:
    """`fig.savefig` into memory, then `write_bytes_atomic`: a killed process or a full disk never
    leaves a truncated PNG or SVG. No creation date is written, so the same figure is the same
    file whenever it is drawn (a republished report changes only where its numbers do)."""
    path = Path(path)
    buffer = io.BytesIO()
    fmt = path.suffix.lstrip(".").lower() or "png"
    if fmt in ("svg", "pdf", "ps", "eps") and "metadata" not in options:
        options["metadata"] = {"Date": None}
    if fmt == "svg":
        import matplotlib

        matplotlib.rcParams["svg.hashsalt"] = "ttrlab"  # element ids from a fixed salt, not a random one
    fig.savefig(buffer, format=fmt, **options)
    return write_bytes_atomic(path, buffer.getvalue(), what)


def write_folder_atomic(folder: str | os.PathLike, write: Callable[[Path], None], what: str = "output folder",
                        rescue: bool = False) -> Path:
    """`write(staging)` fills a staging folder beside the files of `folder` (an owned folder, see
    `own_folder`); then each file is renamed into place. A failure is one line; with `rescue`
    the files are written into a new folder of the temporary folder that the line names."""
    folder = Path(folder)
    staging = None
    try:
        own_folder(folder, what)
        staging = Path(tempfile.mkdtemp(dir=folder, prefix=".staging-"))
        write(staging)
        for item in sorted(staging.rglob("*")):
            if item.is_file():
                target = folder / item.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                _refuse_unless_regular(target, what)
                os.replace(item, target)
    except (OSError, UserError) as error:
        problem = f"cannot write {what} {str(folder)!r}: {path_problem(error)}" if isinstance(error, OSError) else str(error)
        raise UserError(f"{problem}{_rescued_folder(write, folder, rescue)}") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def _rescued_folder(write: Callable[[Path], None], folder: Path, rescue: bool) -> str:
    if not rescue:
        return ""
    for place in _rescue_places():
        elsewhere = None
        try:
            elsewhere = Path(tempfile.mkdtemp(dir=place, prefix=f"ttrlab-rescued-{folder.name[:100]}-"))
            write(elsewhere)
            return f"; it is kept in {str(elsewhere)!r}"
        except OSError:
            if elsewhere is not None:
                shutil.rmtree(elsewhere, ignore_errors=True)
    return "; it could not be kept anywhere else either (the temporary folder, home and the working folder failed)"


def _rescue_places() -> list[Path]:
    return [Path(tempfile.gettempdir()), Path.home(), Path.cwd()]


def _rescued(data: bytes, path: Path, rescue: bool) -> str:
    """'; it is kept in X' after keeping `data` elsewhere (when `rescue`), else ''."""
    if not rescue:
        return ""
    for place in _rescue_places():
        name = None
        try:
            fd, name = tempfile.mkstemp(dir=place, prefix=f"ttrlab-rescued-{path.stem[:100]}-", suffix=path.suffix[:20])
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            return f"; it is kept in {name!r}"
        except OSError:
            if name is not None:
                Path(name).unlink(missing_ok=True)
    return "; it could not be kept anywhere else either (the temporary folder, home and the working folder failed)"


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
