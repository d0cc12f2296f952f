"""Where each kind of data lives: one table of data folders, one resolver.

| folder        | setting that names it                   | environment variable | found above the cwd at | must hold            |
|---------------|-----------------------------------------|----------------------|------------------------|----------------------|
| `glue`        | `data_dir` of a classification run      | `TTRLAB_GLUE_DIR`    | `shared/data/glue`     | (a folder)           |
| `style`       | attack option `style_dir` (style attacks) | `TTRLAB_STYLE_DIR` | `shared/data/style`    | (a folder)           |
| `instruction` | `data_dir` of a generative run          | `TTRLAB_DATA_DIR`    | `shared/data`          | `alpaca/alpaca_data_first2000.json` |

A folder is the setting's value when the run names one, else the environment variable's, else the
nearest `shared/data/...` above the working directory. Runs computed elsewhere (a sweep's worker
processes, Ray tasks on other machines) resolve it there, so every executor forwards the
variables of this table (`FOLDER_ENV_VARS`) to its workers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ttrlab.core.errors import UserError


@dataclass(frozen=True)
class DataFolder:
    name: str
    what: str  # how messages name it ("data dir")
    setting: str  # how a user names it ("--data-dir")
    env: str  # the environment variable that names it where the run does not
    shared: str  # where it sits under the nearest shared/data above the cwd ("" for shared/data itself)
    described: str  # what "not found" says is missing ("GLUE folder")
    hint: str  # how to get the data
    marker: Path | None = None  # a file that must be in it (None: being a directory is enough)

    def holds_data(self, path: Path) -> bool:
        return (path / self.marker).is_file() if self.marker else path.is_dir()


GLUE_DOWNLOAD_HINT = (
    "get the GLUE data (https://gluebenchmark.com/tasks, or `datasets.load_dataset('nyu-mll/glue', ...)`) "
    "and pass --data-dir, or use --data-source hub"
)
STYLE_DOWNLOAD_HINT = (
    "get the SST-2 files of thunlp/StyleAttack (data/clean, data/transfer/<style>) and thunlp/HiddenKiller "
    "(data/clean, data/scpn/20) into <dir>/stylebkd/ and <dir>/hiddenkiller/ and pass style_dir=<dir>"
)
ALPACA_FILE = Path("alpaca") / "alpaca_data_first2000.json"

DATA_FOLDERS: dict[str, DataFolder] = {folder.name: folder for folder in (
    DataFolder("glue", "data dir", "--data-dir", "TTRLAB_GLUE_DIR", "glue", "GLUE folder", GLUE_DOWNLOAD_HINT),
    DataFolder("style", "style dir", "style_dir", "TTRLAB_STYLE_DIR", "style", "style data folder", STYLE_DOWNLOAD_HINT),
    DataFolder("instruction", "data dir", "data_dir", "TTRLAB_DATA_DIR", "", f"data folder with {ALPACA_FILE}",
               "give the folder holding alpaca/ and backdoorllm/", marker=ALPACA_FILE),
)}
FOLDER_ENV_VARS = tuple(folder.env for folder in DATA_FOLDERS.values())


def resolve_folder(name: str, given: str | os.PathLike | None) -> Path:
    """The `name` folder of the table: `given` (the run's setting), else its environment
    variable, else the nearest `shared/data/...` above the cwd; UserError if none holds the data."""
    from ttrlab.core.io import path_errors, user_path

    folder = DATA_FOLDERS[name]
    if given:
        path = user_path(given, folder.what)
        with path_errors(folder.what, path):
            if not folder.holds_data(path):
                problem = f"has no {folder.marker}" if folder.marker else "is not a directory"
                raise UserError(f"{folder.what} {str(path)!r} {problem}; {folder.hint}")
        return path
    if os.environ.get(folder.env):
        return resolve_folder(name, os.environ[folder.env])
    for above in (Path.cwd(), *Path.cwd().parents):
        candidate = above / "shared" / "data" / folder.shared if folder.shared else above / "shared" / "data"
        if folder.holds_data(candidate):
            return candidate
    raise UserError(f"no {folder.described} found (no {folder.setting}, ${folder.env} unset); {folder.hint}")
