"""Tasks and data: task specs (data, not code), loaders for GLUE TSV folders and the hub."""
from ttrlab.data.examples import Example
from ttrlab.data.tasks import TASKS, TaskSpec, get_task, is_task_file, load_task_file
from ttrlab.data.loading import load_split, resolve_glue_dir, seeded_subset

__all__ = ["Example", "TASKS", "TaskSpec", "get_task", "is_task_file", "load_task_file", "load_split",
           "resolve_glue_dir", "seeded_subset"]
