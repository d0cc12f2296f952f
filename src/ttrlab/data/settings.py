"""The data of a classification run: which task, from where, how much of it, how long."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttrlab.core.settings import Section, require, setting

DATA_SOURCES = ("local", "hub")


@dataclass
class ClassificationData(Section):
    task: str = setting("sst2", "GLUE task: sst2, cola, qnli, qqp, rte, mrpc (`ttrlab tasks`), or a task file (*.yaml)")
    data_dir: str | None = setting(None, "GLUE folder in the original TSV layout (default $TTRLAB_GLUE_DIR or ../shared/data/glue)")
    data_source: str = setting("local", "local | hub")
    train_size: int | None = setting(None, "seeded random subset of the training split (default: all)")
    eval_size: int | None = setting(None, "fixed random subset of the dev split, the same for every seed (default: all)")
    max_length: int = setting(128, "truncation length in tokens (paper: 512; batches are padded dynamically)")
    eval_batch_size: int = setting(64, "evaluation batch size")

    def check(self) -> None:
        from ttrlab.data.tasks import get_task

        get_task(self.task)
        require(self.data_source in DATA_SOURCES, f"data_source {self.data_source!r} is not one of {', '.join(DATA_SOURCES)}")
        for name in ("train_size", "eval_size"):
            value = getattr(self, name)
            require(value is None or value >= 1, f"{name} {value} must be >= 1")
        require(self.max_length >= 8, f"max_length {self.max_length} must be >= 8")
        require(self.eval_batch_size >= 1, f"eval_batch_size {self.eval_batch_size} must be >= 1")

    def check_model(self, model_config) -> None:
        check_max_length(self.max_length, self.model, model_config)

    def resolve(self, values: dict[str, Any]) -> None:
        from ttrlab.data.tasks import is_task_file

        if is_task_file(self.task):  # the stored config names the file wherever it is run from
            values["task"] = str(Path(self.task).expanduser().resolve())

    def identity(self, values: dict[str, Any]) -> None:
        from ttrlab.data.tasks import get_task, is_task_file

        values.pop("data_dir", None)  # where the data lies does not change the run
        if is_task_file(self.task):
            # a file task is its content, not its path: a changed data file is a new run, a moved
            # task folder the same run (GLUE tasks keep their name only, so their keys stay)
            task = get_task(self.task)
            values["task"] = task.name
            values["task_content_sha256"] = task.content_sha256()
            values.pop("data_source", None)  # a task file says where its data is


def check_max_length(max_length: int, model: str, model_config) -> None:
    """max_length at most the model's positions: a longer example would index past them."""
    from ttrlab.models.config import positions_of

    positions = positions_of(model_config)
    require(positions is None or max_length <= positions,
            f"max_length {max_length} exceeds the {positions} positions of model {model!r}; allowed: at most {positions}")
