"""Write a benchmark's own output into benchmarks/README.md, so the tables there are output, not
typed by hand.

Each script's block lies between `<!-- <script stem>: begin -->` and `<!-- <script stem>: end -->`.
A script passes its parser through `parse_args` (which adds `--write-readme`) and its `main`
through `run`; with the flag, everything the script prints from then on is also recorded, and
when `main` returns normally the block is replaced by: the command as typed, the date (UTC), this
machine (CPU, cores usable, accelerator, versions) and the load average at start and end, then
the output. A script that fails writes nothing. Output that is a Markdown table is written as
Markdown; any other output is fenced as text, as printed.

    args = _readme.parse_args(parser)       # instead of parser.parse_args()
    ...
    if __name__ == "__main__":
        sys.exit(_readme.run(main))          # instead of sys.exit(main())
"""
from __future__ import annotations

import datetime as dt
import io
import os
import platform
import re
import shlex
import sys
from pathlib import Path

README = Path(__file__).resolve().with_name("README.md")
FLAG = "--write-readme"


class _Tee(io.TextIOBase):
    """stdout that also keeps a copy of what was written."""

    def __init__(self, stream):
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    @property
    def encoding(self):
        return self.stream.encoding


_recording: dict | None = None


def parse_args(parser, argv=None):
    """`parser.parse_args(argv)` with `--write-readme` added; with the flag, start recording."""
    global _recording
    parser.add_argument(FLAG, action="store_true",
                        help="also write this run's output into benchmarks/README.md, between this script's markers")
    args = parser.parse_args(argv)
    if args.write_readme:
        typed = [a for a in (sys.argv[1:] if argv is None else argv) if a != FLAG]
        _recording = {"command": " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *map(shlex.quote, typed)]),
                      "started": dt.datetime.now(dt.timezone.utc), "load": _load(), "tee": _Tee(sys.stdout)}
        sys.stdout = _recording["tee"]
    return args


def run(main) -> int:
    """Call `main()`; if it returns normally (None or 0) while recording, write the block."""
    code = main()
    if _recording is not None:
        sys.stdout = _recording["tee"].stream
        if code in (None, 0):
            stem = Path(main.__code__.co_filename).stem
            write(stem, block(_recording["command"], _recording["started"], machine(),
                              (_recording["load"], _load()), _recording["tee"].copy.getvalue()))
            print(f"benchmarks/README.md: the {stem} block is replaced")
    return code or 0


def block(command: str, when: dt.datetime, where: str, load: tuple[str, str], output: str) -> str:
    """The text between a script's markers."""
    head = (f"`{command}` on {when:%Y-%m-%d} (UTC), {where}; "
            f"load average {load[0]} at start, {load[1]} at end.")
    body = output.strip("\n")
    is_markdown = re.search(r"^\|[-:| ]+\|\s*$", body, flags=re.M) is not None
    return f"{head}\n\n{body}" if is_markdown else f"{head}\n\n```text\n{body}\n```"


def write(stem: str, text: str, path: Path = README) -> None:
    """Replace the text between `stem`'s markers in `path` (atomically); append the markers if
    the file has none for `stem`."""
    begin, end = f"<!-- {stem}: begin -->", f"<!-- {stem}: end -->"
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin in old and end in old.split(begin, 1)[1]:
        before, rest = old.split(begin, 1)
        new = f"{before}{begin}\n{text}\n{end}{rest.split(end, 1)[1]}"
    else:
        new = f"{old.rstrip()}\n\n## {stem}\n\n{begin}\n{text}\n{end}\n"
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(new, encoding="utf-8")
    os.replace(partial, path)


def machine() -> str:
    """CPU model, cores usable, accelerator and versions, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [f"{cpu}, {cores} cores usable of {os.cpu_count()}"]
    torch = sys.modules.get("torch")  # never imported here: a script that does not use torch stays without
    if torch is not None:
        parts.append(f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU")
        parts.append(f"torch {torch.__version__}")
    parts.append(f"Python {platform.python_version()}")
    return ", ".join(parts)


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "unknown"
