"""Core commands: `train` (one run), `run` (the main job), `tasks`, `attacks`, `methods`."""
from __future__ import annotations

import argparse
import sys
import time

from ttrlab.kinds.classification.config import RunConfig
from ttrlab.core.errors import UserError
from ttrlab.cli import command_parser


def register(subparsers) -> None:
    from ttrlab.cli.options import add_config_options

    train = command_parser(subparsers, "train")
    add_config_options(train, RunConfig, skip=("length_bucketing",))
    train.add_argument("--no-bucketing", action="store_true", help="random batches instead of length buckets")
    train.add_argument("--out", default=None, help="write the result JSON here (atomically)")
    train.add_argument("--save-adapter", default=None, metavar="DIR",
                       help="save the LoRA adapter (safetensors); with --max-steps 0 this is the untrained init")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=_train)

    run = command_parser(subparsers, "run")
    run.add_argument("--db", default="runs/main.sqlite", help="results database (resumable: finished runs are kept)")
    run.add_argument("--out", default="runs/report", help="report folder (index.html, figures, tables)")
    run.add_argument("--workers", type=int, default=None, help="parallel runs (default: one per core)")
    run.add_argument("--executor", default="local", help="local | ray | inline")
    run.add_argument("--data-dir", default=None)
    run.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N | mps (default: the spec's, auto)")
    run.add_argument("--precision", default=None, help="fp32 | bf16 | fp16 (default fp32: the README's numbers)")
    run.add_argument("--fuse", default="off", metavar="on|off",
                     help="on: runs that can train together run as one fused group; off (default): each alone")
    run.add_argument("--quiet", action="store_true")
    run.set_defaults(func=_run)



def config_from_args(args: argparse.Namespace) -> RunConfig:
    from ttrlab.cli.options import config_from_args as from_args

    return from_args(args, RunConfig, **({"length_bucketing": False} if args.no_bucketing else {}))


def _train(args: argparse.Namespace) -> int:
    from ttrlab.cli import print_json
    from ttrlab.cli.options import run_and_write
    from ttrlab.kinds.classification.experiment import experiment_for
    from ttrlab.methods import METHODS

    config = config_from_args(args)
    if args.save_adapter and METHODS.get(config.method).is_full:
        raise UserError(f"--save-adapter needs --method lora (an adapter method), got method {config.method!r}")
    result = run_and_write(experiment_for(config), config, args, f"{config.method} {config.attack}", adapter_dir=args.save_adapter)
    print_json({"metrics": result["metrics"], "poison": result["poison"], "train": result["train"],
                "runtime": result["runtime"]})
    if result["train"] is not None and result["train"].get("learned") is False:
        from ttrlab.core.errors import warning
        from ttrlab.data import get_task
        from ttrlab.training.fit import not_learned_message

        warning(not_learned_message(result["train"]["final_loss"], get_task(config.task).num_labels, config))
    return 0


def main_job_spec(data_dir: str | None = None, **base: str) -> dict:
    """The main job's sweep spec (`ttrlab/specs/main.yaml`, shipped in the package; specs/cpu/main.yaml
    is a link to it, not a copy), with `data_dir` and any other base settings given (device,
    precision) filled in."""
    from importlib import resources

    import yaml

    spec = yaml.safe_load(resources.files("ttrlab").joinpath("specs/main.yaml").read_text(encoding="utf-8"))
    if data_dir:
        spec["base"]["data_dir"] = data_dir
    spec["base"].update({k: v for k, v in base.items() if v is not None})
    return spec


MAIN_JOB_METRICS = [("clean.accuracy", "clean acc"), ("clean.f1", "clean F1"),
                    ("triggered.accuracy", "triggered acc"), ("asr", "ASR")]


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ttrlab.cli.options import on_off
    from ttrlab.kinds.classification.experiment import load_run_data
    from ttrlab.core.io import check_output_folder, path_errors, user_path
    from ttrlab.report import build_report
    from ttrlab.report.aggregate import build_cells
    from ttrlab.sweep import ResultStore, load_spec, run_sweep
    from ttrlab.sweep.store import FINISHED

    fuse = on_off(args.fuse, "--fuse")
    spec = load_spec(main_job_spec(args.data_dir, device=args.device, precision=args.precision))
    check_output_folder(args.out, "report folder")  # before the sweep, not after it
    load_run_data(RunConfig.from_dict(spec.base))  # data errors surface before any progress output
    if "://" not in str(args.db):  # a file path: its folder is made for it (runs/ by default)
        folder = user_path(args.db, "--db").parent
        with path_errors("database folder", folder):
            folder.mkdir(parents=True, exist_ok=True)
    from ttrlab.cli.plan import local_workers, plan_line

    def announce(planned):  # what this job will do and for how long, before its first run
        print(plan_line(spec, planned, args.db, local_workers(spec, args.executor, args.workers)), file=sys.stderr,
              flush=True)

    started = time.perf_counter()
    summary = run_sweep(spec, args.db, executor=args.executor, workers=args.workers, progress=not args.quiet,
                        fuse=fuse, announce=announce)
    wall = time.perf_counter() - started
    index = build_report(args.db, args.out)

    with ResultStore(args.db) as store:
        runs = store.runs(status=FINISHED, kind=spec.kind)
    keys = {r.run_key for r in spec.expand().runs}  # this job's runs, whatever else the database holds
    cells = build_cells([r for r in runs if r["run_key"] in keys])
    table = Table(title=f"{spec.description} · mean ± std over seeds {', '.join(map(str, spec.seeds))}")
    for column in ("method", "attack", "rate", "n", *(label for _, label in MAIN_JOB_METRICS)):
        table.add_column(column, justify="left" if column in ("method", "attack") else "right")
    for cell in cells:
        c = cell.config
        values = []
        for metric, _ in MAIN_JOB_METRICS:
            stat = cell.summaries.get(metric)
            values.append("–" if stat is None else f"{stat.mean:.3f} ± {stat.std:.3f}" if stat.n > 1 else f"{stat.mean:.3f}")
        table.add_row(c["method"], c["attack"], f"{c['rate']:g}", str(len(cell.seeds)), *values)
    console = Console(width=None if sys.stdout.isatty() else 150)  # no wrapping in logs and pipes
    console.print(table)
    console.print(
        f"{summary['ran']} runs now ({summary['already_finished']} already in {summary['db']}, {summary['failed']} failed) "
        f"in {wall / 60:.1f} min; report: {index}"
    )
    unlearned = sum((r["result"].get("train") or {}).get("learned") is False for r in runs if r["run_key"] in keys)
    if unlearned:
        from ttrlab.core.errors import warning
        from ttrlab.training.fit import not_learned_summary

        warning(not_learned_summary(unlearned, len(keys)))
    return 0 if summary["failed"] == 0 and not summary["interrupted"] else 1
