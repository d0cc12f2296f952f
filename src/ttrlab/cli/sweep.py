"""`ttrlab sweep SPEC --db results.sqlite [--executor local|ray|inline] [--workers N] [--dry-run]
[--retry-failed] [--fuse on|off] [--lease S] [--device D] [--precision P] [--until-decided [--budget H]
[--max-seeds N] [--claims FILE]]` and
`ttrlab status --db results.sqlite [--spec SPEC] [--json]`."""
from __future__ import annotations

import argparse
import sys

from ttrlab.core.errors import UserError
from ttrlab.cli import command_parser


def register(subparsers) -> None:
    sweep = command_parser(subparsers, "sweep")
    sweep.add_argument("spec", help="sweep spec YAML (see specs/cpu/ and specs/paper/)")
    sweep.add_argument("--db", required=True, help="results database: a file path (SQLite) or an SQLAlchemy URL")
    sweep.add_argument("--executor", default="local",
                       help="local: process pool (default); ray: Ray tasks; inline: this process (an unknown name is "
                            "refused with the registered ones)")
    sweep.add_argument("--workers", type=int, default=None,
                       help="parallel runs (default: cores // the spec's resources.cpus)")
    sweep.add_argument("--dry-run", action="store_true", help="print the run count and what would run; run nothing")
    sweep.add_argument("--retry-failed", action="store_true", help="redo runs recorded as failed")
    sweep.add_argument("--ray-address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or a local instance)")
    sweep.add_argument("--device", default=None, help="set every run's device (auto | cpu | cuda | cuda:N | mps)")
    sweep.add_argument("--precision", default=None, help="set every run's precision (fp32 | bf16 | fp16)")
    sweep.add_argument("--fuse", default="off", metavar="on|off",
                       help="on: runs whose kind can train them together (LoRA on a GPU) run as one fused group in one "
                            "worker; off (default, until a GPU benchmark shows fusing pays): every run alone")
    sweep.add_argument("--lease", type=float, default=None, metavar="SECONDS",
                       help="drivers sharing a database: seconds without this driver's heartbeat after which "
                            "another may take its runs over (default 120)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bars")
    decided = sweep.add_argument_group("seeds until decided (sweep/until_decided.py)")
    decided.add_argument("--until-decided", action="store_true",
                         help="after the spec's seeds, add seeds look by look to the runs of the primary claims "
                              "this spec can still decide (cheapest first), stopping each claim once decided")
    decided.add_argument("--budget", type=float, default=None, metavar="HOURS",
                         help="run-hours (the runs' recorded seconds) the added seeds may cost (default: no limit)")
    decided.add_argument("--max-seeds", type=int, default=None, metavar="N",
                         help="never go beyond N seeds per claim (default: the claims file's last declared look)")
    decided.add_argument("--claims", default=None, metavar="FILE",
                         help="the claims file to decide (default: the paper's, report/claims/paper_claims.yaml)")
    sweep.set_defaults(func=_sweep)

    status = command_parser(subparsers, "status")
    status.add_argument("--db", required=True, help="results database: a file path (SQLite) or an SQLAlchemy URL")
    status.add_argument("--spec", default=None, help="count exactly this spec's runs (default: every sweep stored)")
    status.add_argument("--slowest", type=int, default=10, help="running runs to list, slowest first (default 10)")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(func=_status)


def _sweep(args: argparse.Namespace) -> int:
    from ttrlab.cli.options import on_off
    from ttrlab.sweep.groups import work_units
    from ttrlab.sweep.runner import plan, run_sweep
    from ttrlab.sweep.spec import load_spec

    from ttrlab.sweep.executors import EXECUTORS

    EXECUTORS.get(args.executor)  # one line naming the registered executors, before anything is read
    fuse = on_off(args.fuse, "--fuse")
    if not args.until_decided and (args.budget is not None or args.max_seeds is not None or args.claims is not None):
        raise UserError("--budget, --max-seeds and --claims go with --until-decided")
    overrides = {k: v for k, v in (("device", args.device), ("precision", args.precision)) if v is not None}
    spec = load_spec(args.spec, base=overrides)
    if args.until_decided:
        return _until_decided(args, spec, fuse)
    if args.dry_run:
        planned = plan(spec, args.db, args.retry_failed)
        expansion = planned["expansion"]
        units = work_units(planned["todo"], fuse=fuse)
        groups = sum(len(unit) > 1 for unit in units)
        print(f"sweep {spec.name!r}: {len(expansion.runs)} runs "
              f"({expansion.points} points, {expansion.duplicates} duplicates dropped); "
              f"{len(planned['finished'])} already finished, {len(planned['failed'])} failed"
              f"{' (will be retried)' if args.retry_failed else ' (skipped; --retry-failed redoes them)'}; "
              f"{len(planned['todo'])} would run"
              f"{f' as {len(units)} units ({groups} fused groups)' if groups else ''}")
        for unit in units:  # in the order the executor starts them
            if len(unit) > 1:
                print(f"  group of {len(unit)}:")
            for run in unit:
                print(f"{'    ' if len(unit) > 1 else '  '}{run.run_key}  [{run.grid}] {run.label()}")
        return 0
    from ttrlab.cli.plan import local_workers, plan_line
    from ttrlab.sweep.store import DEFAULT_LEASE_SECONDS

    # what this job will do and for how long, before its first run can take minutes; on stderr with
    # the other messages, so stdout stays one line per finished run and the summary (a pipe reads it)
    def announce(planned):
        print(plan_line(spec, planned, args.db, local_workers(spec, args.executor, args.workers), args.retry_failed),
              file=sys.stderr, flush=True)

    summary = run_sweep(spec, args.db, executor=args.executor, workers=args.workers, progress=not args.quiet,
                        retry_failed=args.retry_failed, ray_address=args.ray_address, fuse=fuse,
                        lease=DEFAULT_LEASE_SECONDS if args.lease is None else args.lease, announce=announce)
    print(f"sweep {summary['sweep']!r}: {summary['planned']} runs planned, {summary['already_finished']} already "
          f"finished, {summary['ran']} ran ({summary['finished']} finished, {summary['failed']} failed), "
          f"{summary['skipped_failed']} failed earlier and skipped"
          f"{_shared(summary)}; {summary['seconds']:.0f} s; db {summary['db']}")
    for label, message in summary["failures"]:
        print(f"  failed: {label}: {message}", file=sys.stderr)
    keys = [run.run_key for run in spec.expand().runs]
    unlearned = _not_learned(args.db, spec.kind, keys) if summary["finished"] + summary["already_finished"] else 0
    if unlearned:
        from ttrlab.core.errors import warning
        from ttrlab.training.fit import not_learned_summary

        warning(not_learned_summary(unlearned, len(keys)))
    if summary["interrupted"]:
        print(f"ttrlab: interrupted ({summary['interrupted']}); finished runs are stored, re-run the same command "
              "to resume", file=sys.stderr)
        return 128 + {"SIGTERM": 15, "SIGHUP": 1}.get(summary["interrupted"], 2)  # the shell's code for each
    return 1 if summary["failed"] else 0


def _not_learned(db, kind: str, run_keys: list[str]) -> int:
    """How many of these finished runs did not learn their task (`train.learned` false in the
    stored result, `ttrlab.training.fit`): what a job says after its runs, as `ttrlab train` does.
    Reads only these runs' documents, a batch of keys at a time."""
    import json

    from sqlalchemy import Text, cast, select

    from ttrlab.sweep.store import FINISHED, ResultStore, Run

    count = 0
    # opened as the sweep opened it (a read-only SQLite reader closing last would leave -wal/-shm files)
    with ResultStore(db) as store, store.session() as s:
        for first in range(0, len(run_keys), 500):
            rows = s.execute(select(cast(Run.result, Text)).where(Run.kind == kind, Run.status == FINISHED,
                                                                  Run.run_key.in_(run_keys[first:first + 500])))
            for (result,) in rows:
                try:
                    train = (json.loads(result) or {}).get("train")
                except (TypeError, ValueError, AttributeError):
                    continue  # a damaged row: the report notes it, this count leaves it out
                count += isinstance(train, dict) and train.get("learned") is False
    return count


def _until_decided(args: argparse.Namespace, spec, fuse: bool) -> int:
    from ttrlab.sweep.runner import run_sweep
    from ttrlab.sweep.store import DEFAULT_LEASE_SECONDS
    from ttrlab.report.claims.until_decided import run_until_decided

    if args.dry_run:
        from ttrlab.report.claims.until_decided import first_round

        print(first_round(spec, args.db, args.budget, args.max_seeds, args.claims, args.retry_failed))
        return 0

    def run(one_spec) -> dict:
        summary = run_sweep(one_spec, args.db, executor=args.executor, workers=args.workers, progress=not args.quiet,
                            retry_failed=args.retry_failed, ray_address=args.ray_address, fuse=fuse,
                            lease=DEFAULT_LEASE_SECONDS if args.lease is None else args.lease)
        print(f"sweep {summary['sweep']!r}: {summary['planned']} runs planned, {summary['already_finished']} already "
              f"finished, {summary['ran']} ran ({summary['finished']} finished, {summary['failed']} failed); "
              f"{summary['seconds']:.0f} s")
        for label, message in summary["failures"]:
            print(f"  failed: {label}: {message}", file=sys.stderr)
        return summary

    result = run_until_decided(spec, args.db, budget_hours=args.budget, max_seeds=args.max_seeds, claims=args.claims,
                               run=run)
    print(f"until decided: {result['rounds']} round(s) after the spec's seeds, {result['run_hours']:.2f} run-hours added; "
          f"decided: {', '.join(result['decided']) or 'none'}")
    for claim, why in result["skipped"].items():
        print(f"  {claim}: {why}")
    last = result["summaries"][-1]
    if last.get("interrupted"):
        return 128 + {"SIGTERM": 15, "SIGHUP": 1}.get(last["interrupted"], 2)
    return 1 if any(s["failed"] for s in result["summaries"]) else 0


def _shared(summary: dict) -> str:
    """What other drivers on the same database did for this sweep, if anything."""
    parts = []
    if summary["stored_elsewhere"]:
        parts.append(f"{summary['stored_elsewhere']} stored by another driver")
    if summary["taken_over"]:
        parts.append(f"{summary['taken_over']} taken over from a driver that is gone")
    return "".join(f", {part}" for part in parts)


def _status(args: argparse.Namespace) -> int:
    import json

    from ttrlab.core.errors import note
    from ttrlab.sweep.spec import load_spec
    from ttrlab.sweep.status import as_json, database_status, render, spec_status
    from ttrlab.sweep.store import ResultStore, redacted

    if args.slowest < 0:
        raise UserError(f"--slowest {args.slowest} must be >= 0")
    spec = load_spec(args.spec) if args.spec else None
    with ResultStore(args.db, create=False) as store:
        for message in store.notes:
            note(message)
        statuses = [spec_status(store, spec)] if spec is not None else database_status(store)
        where = f"{redacted(store.url)} (schema {store.schema_version})"
    print(json.dumps(as_json(statuses), indent=2) if args.json else render(statuses, where, args.slowest))
    return 0
