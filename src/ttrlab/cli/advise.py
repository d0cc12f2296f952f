"""`ttrlab advise`: rank candidate configurations by predicted robustness before training them,
and (`--calibrate`) measure how well the predictors rank configurations held out of the fit.
Argument parsing and printing only; the work is in `ttrlab.advise`."""
from __future__ import annotations

import argparse
import json

from ttrlab.cli import command_parser
from ttrlab.cli.options import finite_float
from ttrlab.core.errors import UserError


def register(subparsers) -> None:
    p = command_parser(subparsers, "advise", description=(
        "Rank candidate fine-tuning configurations by the harm an attack is predicted to do them (most robust "
        "first), from predictors computed at initialisation on a probe batch; with --calibrate, the held-out "
        "Spearman rho of every predictor on the configurations of a results database."))
    p.add_argument("--calibrate", action="store_true", help="print the held-out rho table of --db (no candidates)")
    p.add_argument("--db", default=None, help="results database of finished training runs (read only)")
    p.add_argument("--spec", default=None, help="candidates: the points of this sweep spec (kind train) under --attack "
                                                 "at --rate")
    p.add_argument("--task", default="sst2")
    p.add_argument("--model", default="minilm")
    p.add_argument("--attack", default="bpa")
    p.add_argument("--rate", type=finite_float, default=0.01)
    p.add_argument("--method", type=_names, default=["ff", "lora"], help="comma list (default: ff,lora)")
    p.add_argument("--rank", type=_ints, default=[8], help="comma list of LoRA ranks (default: 8)")
    p.add_argument("--init-scale", type=_scales, default=[None], help="comma list; 'default' is the init's own")
    p.add_argument("--lr-preset", default="cpu")
    p.add_argument("--train-size", type=int, default=2000)
    p.add_argument("--max-steps", type=int, default=200, help="training steps, for the training-cost estimate")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--by", default=None, help="rank by this predictor or model (theory|baselines|all); default: the "
                                               "theory model fitted on --db, or grad_alignment without --db")
    p.add_argument("--target", default=None, help="what --db measures (default: the attack family's primary target)")
    p.add_argument("--probe-size", type=int, default=16, help="examples in the probe batch (default 16)")
    p.add_argument("--probe-steps", type=int, default=3, help="k full-batch steps of the baselines (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the probe (its samples, head, LoRA A)")
    p.add_argument("--probes", default=None, help="JSON-lines file of stored probes: read, and appended to")
    p.add_argument("--cached-only", action="store_true", help="--calibrate on the configurations whose probes "
                                                               "--probes holds (computes none; says how many it left out)")
    p.add_argument("--folds", type=int, default=None, help="K folds of whole configurations (default: leave one out)")
    p.add_argument("--device", default="cpu", help="where probes compute: cpu (default), cuda, cuda:N, mps")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the probes (default 1, as a sweep worker "
                                                           "with cpus: 1: on a shared CPU, threads wait on each other)")
    p.add_argument("--json", default=None, help="also write the table or ranking here as JSON")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ttrlab.advise.predictors import PREDICTORS

    from ttrlab.advise.held_out import COMBINED

    if args.by is not None and args.by not in COMBINED and args.by not in PREDICTORS:
        raise UserError(f"--by {args.by!r} is not a predictor or model; allowed: {', '.join([*COMBINED, *PREDICTORS.names()])}")
    if args.folds is not None and args.folds < 2:
        raise UserError(f"--folds {args.folds} must be >= 2 (or left out: leave one configuration out)")
    if args.threads < 1:
        raise UserError(f"--threads {args.threads} must be >= 1")
    if args.cached_only and not args.probes:
        raise UserError("--cached-only needs --probes FILE (the stored probes to calibrate on)")
    if args.calibrate and args.db is None:
        raise UserError("--calibrate needs --db DB (the finished training runs to calibrate on)")
    import torch

    torch.set_num_threads(args.threads)
    return calibrate(args) if args.calibrate else advise(args)


# ---- calibration -----------------------------------------------------------------------------
def calibrate(args) -> int:
    from ttrlab.advise.cache import ProbeCache
    from ttrlab.advise.held_out import held_out_table, markdown
    from ttrlab.advise.probe import ProbeSettings
    from ttrlab.sweep.store import ResultStore

    with ResultStore(args.db, create=False) as store:
        runs = store.runs(kind="train")
    settings = ProbeSettings(args.probe_size, args.probe_steps, args.seed)
    document = held_out_table(runs, ProbeCache(args.probes), settings, targets=[args.target] if args.target else None,
                              folds=args.folds, cached_only=args.cached_only, steps=args.max_steps,
                              batch_size=args.batch_size, progress=_progress, runtime=_runtime(args))
    for line in document["notes"]:
        print(line)
    for name, table in document["targets"].items():
        print(markdown(name, table))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"db": args.db, **document}, out, indent=2, default=float)
    return 0


# ---- advising --------------------------------------------------------------------------------
def advise(args) -> int:
    from ttrlab.advise import candidates
    from ttrlab.advise.cache import ProbeCache, probe_all
    from ttrlab.advise.calibrate import Ridge, feature_matrix
    from ttrlab.advise.held_out import model_names, probed_configurations, training_estimate
    from ttrlab.sweep.store import ResultStore
    from ttrlab.advise.probe import ProbeSettings
    from ttrlab.advise.targets import PRIMARY, family_of

    import numpy as np

    if args.spec is not None:
        configs = candidates.from_spec(args.spec, args.attack, args.rate)
    else:
        base = {"task": args.task, "model": args.model, "attack": args.attack, "rate": args.rate,
                "lr_preset": args.lr_preset, "train_size": args.train_size, "max_steps": args.max_steps,
                "batch_size": args.batch_size}
        configs = candidates.from_grid(base, args.method, args.rank, args.init_scale)
    settings = ProbeSettings(args.probe_size, args.probe_steps, args.seed)
    settings.check()
    records = probe_all(configs, settings, ProbeCache(args.probes), progress=_progress, runtime=_runtime(args))
    by = args.by or ("theory" if args.db else "grad_alignment")
    names = model_names(by)
    x = feature_matrix(records, names)
    stored: dict[tuple, list[float]] = {}  # (task, method) -> stored seconds per training run, from --db
    if args.db:
        args.target = args.target or PRIMARY[family_of(configs[0]["attack"])]
        with ResultStore(args.db, create=False) as store:
            runs = store.runs(kind="train")
        notes: list[str] = []
        found, calibration = probed_configurations(runs, args.target, ProbeCache(args.probes), settings,
                                                   progress=_progress, notes=notes, runtime=_runtime(args))
        for line in notes:
            print(line)
        for c in found:
            stored.setdefault((c.config["task"], c.config["method"]), []).append(c.mean_seconds)
        cx = feature_matrix(calibration, names)
        keep = np.isfinite(cx).all(axis=1)
        model = Ridge.fit(cx[keep], np.array([c.harm for c in found])[keep])
        scores = model.predict(x)
        how = f"{by} fitted on {int(keep.sum())} configurations of {args.db} ({args.target}); predicted harm"
    else:
        scores = x[:, 0] if len(names) == 1 else np.nanmean(x, axis=1)
        how = f"{by} as computed (no --db: uncalibrated, higher = predicted more harm, as the paper reads it)"
    order = np.argsort(np.where(np.isfinite(scores), scores, np.inf), kind="stable")
    def estimate(record: dict, config: dict) -> tuple[float, str]:
        seconds = stored.get((config["task"], config["method"]))
        if seconds:
            return float(np.mean(seconds)), "stored"
        return training_estimate(record, config.get("max_steps", args.max_steps),
                                 config.get("batch_size", args.batch_size)), "extrapolated"

    probe_seconds = sum(r["seconds"] for r in records)
    estimates = [estimate(r, c) for r, c in zip(records, configs)]
    training = sum(seconds for seconds, _ in estimates)
    print(f"ranking by {how}; most robust first")
    print("| # | candidate | score | probe s | est. training s |")
    print("|---|---|---|---|---|")
    ranking = []
    for place, i in enumerate(order, 1):
        label = _label(configs[i])
        print(f"| {place} | {label} | {scores[i]:.4g} | {records[i]['seconds']:.0f} | {estimates[i][0]:.0f} ({estimates[i][1]}) |")
        ranking.append({"candidate": label, "score": float(scores[i]), "config": records[i]["config"]})
    print(f"prediction: {probe_seconds:.0f} s for {len(configs)} candidates (the probes' own seconds, as recorded); training them once: "
          f"{training:.0f} s ({training / probe_seconds:.1f}x; 'stored': mean seconds of --db's runs of the method on "
          f"the task, measured when they ran; 'extrapolated': the probe's full-batch step time x steps x batch size)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"by": by, "ranking": ranking, "probe_seconds": probe_seconds, "training_seconds": training}, out, indent=2)
    return 0


def _runtime(args):
    """Where probes compute: --device, in fp32 (the theory's quantities are fp32 arithmetic)."""
    from ttrlab.models.runtime import Runtime

    return Runtime.resolve(args.device, "fp32")


def _label(config: dict) -> str:
    from ttrlab.methods import METHODS

    method = METHODS.get(config["method"])
    return f"{method.describe(config)} {config['attack']} {100 * config['rate']:g}%"


def _progress(done: int, total: int, record: dict) -> None:
    import sys

    print(f"probe {done}/{total}: {record['config']['method']} {record['seconds']:.0f} s", file=sys.stderr)


# ---- argument types --------------------------------------------------------------------------
def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of integers") from None


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _scales(text: str) -> list[float | None]:
    values = []
    for x in (x.strip() for x in text.split(",") if x.strip()):
        values.append(None if x == "default" else finite_float(x))
    return values
