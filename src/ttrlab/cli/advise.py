"""`ttrlab advise`: rank candidate configurations by predicted robustness before training them,
and (`--calibrate`) measure how well the predictors rank configurations held out of the fit.
Argument parsing and printing only; the work is in `ttrlab.advise`."""
from __future__ import annotations

import argparse
import json
import math

from ttrlab.cli import command_parser
from ttrlab.core.errors import UserError

COMBINED = ("theory", "baselines", "all")  # models of several predictors, besides each predictor alone


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
    p.add_argument("--rate", type=_finite, default=0.01)
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
    p.add_argument("--threads", type=int, default=1, help="torch threads of the probes (default 1, as a sweep worker "
                                                           "with cpus: 1: on a shared CPU, threads wait on each other)")
    p.add_argument("--json", default=None, help="also write the table or ranking here as JSON")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ttrlab.advise.predictors import PREDICTORS

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
def model_names(name: str) -> list[str]:
    from ttrlab.advise.predictors import BASELINE, PREDICTORS, THEORY

    sources = {"theory": (THEORY,), "baselines": (BASELINE,), "all": (THEORY, BASELINE)}
    if name in sources:
        return [n for n in PREDICTORS.registered() if PREDICTORS.get(n).source in sources[name]]
    return [name]


def calibration_rows(args, target_name: str):
    """(configurations, their probe records) of one target on --db."""
    from ttrlab.advise.cache import ProbeCache, probe_all
    from ttrlab.advise.probe import ProbeSettings
    from ttrlab.advise.targets import TARGETS, configurations
    from ttrlab.sweep.store import ResultStore

    with ResultStore(args.db, create=False) as store:
        runs = store.runs(kind="train")
    found = configurations(runs, TARGETS.get(target_name))
    cache = ProbeCache(args.probes)
    settings = ProbeSettings(args.probe_size, args.probe_steps, args.seed)
    if getattr(args, "cached_only", False):
        from ttrlab.advise.probe import probe_key

        held = [c for c in found if cache.get(probe_key(c.config, settings)) is not None]
        if len(held) < len(found):
            print(f"{target_name}: {len(found) - len(held)} of {len(found)} configurations left out (no stored probe)")
        found = held
    skipped: list = []
    records = probe_all([c.config for c in found], settings, cache, progress=_progress, skipped=skipped)
    for values, reason in skipped:
        print(f"{target_name}: left out {values['method']} {values['attack']} {values['rate']:g}: {reason}")
    kept = [i for i, r in enumerate(records) if r is not None]
    return [found[i] for i in kept], [records[i] for i in kept]


def calibrate(args) -> int:
    from ttrlab.advise.calibrate import evaluate, feature_matrix, spearman_interval
    from ttrlab.advise.predictors import PREDICTORS
    from ttrlab.advise.targets import PRIMARY, TARGETS

    import numpy as np

    targets = [args.target] if args.target else [t for t in TARGETS.registered()]
    for t in targets:
        TARGETS.get(t)  # an unknown name: one line, with the allowed ones
    document = {"db": args.db, "cached_only": args.cached_only, "probe": {"n": args.probe_size, "steps": args.probe_steps, "seed": args.seed},
                "folds": args.folds or "leave one configuration out", "targets": {}}
    for target_name in targets:
        found, records = calibration_rows(args, target_name)
        harm = np.array([c.harm for c in found])
        groups = [c.key for c in found]
        probe_seconds = sum(r["seconds"] for r in records)
        theory_seconds = sum(r["theory_seconds"] for r in records)  # model load, samples and the theory's NTK
        stored = sum(c.seconds for c in found)
        one_seed = sum(c.mean_seconds for c in found)
        extrapolated = sum(_training_estimate(r, args) for r in records)
        sets = _candidate_sets(found)
        rows = {}
        for name in [*COMBINED, *PREDICTORS.registered()]:
            result = evaluate(records, harm, groups, model_names(name))
            within = {}
            x = feature_matrix(records, model_names(name))
            for label, members in sets.items():
                if np.nanmax(np.ptp(x[members], axis=0)) == 0:
                    # constant within the set (the rate): it ranks nothing there; what its held-out
                    # score would vary by is the fold's fit, not the candidate
                    within[label] = {"rho": None, "n": len(members), "constant": True}
                    continue
                within[label] = spearman_interval(result["predicted"][members], harm[members])
            rows[name] = {k: v for k, v in result.items() if k != "predicted"} | {"within": within}
        document["targets"][target_name] = {
            "family": TARGETS.get(target_name).family, "primary": PRIMARY.get(TARGETS.get(target_name).family) == target_name,
            "configurations": len(found), "runs": sum(len(c.run_keys) for c in found),
            "candidate_sets": {label: len(m) for label, m in sets.items()},
            "cost": {"probe_seconds": probe_seconds, "probe_theory_seconds": theory_seconds,
                     "probe_baseline_steps_seconds": probe_seconds - theory_seconds, "stored_training_seconds_all_seeds": stored,
                     "stored_training_seconds_one_seed": one_seed, "extrapolated_training_seconds_one_seed": extrapolated},
            "models": rows,
        }
        _print_table(target_name, document["targets"][target_name])
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=2, default=float)
    return 0


def _candidate_sets(found) -> dict[str, list[int]]:
    """Configurations sharing task, attack and rate (what a user ranks among), 5 or more of them."""
    sets: dict[str, list[int]] = {}
    for i, c in enumerate(found):
        sets.setdefault(f"{c.config['task']} {c.config['attack']} {c.config['rate']:g}", []).append(i)
    return {label: m for label, m in sets.items() if len(m) >= 5}


def _cell(summary: dict) -> str:
    if summary.get("constant"):
        return "n/a (constant here)"
    if summary.get("rho") is None:
        return f"n/a (n={summary.get('n', 0)})"
    return f"{summary['rho']:+.2f} [{summary['low']:+.2f}, {summary['high']:+.2f}]"


def _print_table(name: str, table: dict) -> None:
    sets = list(table["candidate_sets"])
    print(f"\n## {name} ({table['family']}): {table['configurations']} configurations, {table['runs']} runs")
    print("held-out Spearman rho [95% bootstrap over configurations]; pooled = all configurations, "
          "then within each candidate set (same task, attack, rate)")
    print("| predictor | pooled | " + " | ".join(f"within {s} (n={table['candidate_sets'][s]})" for s in sets) + " |")
    print("|---|---|" + "---|" * len(sets))
    for model, row in table["models"].items():
        print(f"| {model} | {_cell(row)} | " + " | ".join(_cell(row["within"][s]) for s in sets) + " |")
    cost = table["cost"]
    ratio = cost["stored_training_seconds_one_seed"] / cost["probe_seconds"] if cost["probe_seconds"] else math.nan
    steps = cost["probe_baseline_steps_seconds"]
    print(f"cost: probes {cost['probe_seconds']:.0f} s for all configurations (load + theory "
          f"{cost['probe_theory_seconds']:.0f} s, the baselines' k steps {steps:.0f} s); training them once (stored seconds, "
          f"mean over seeds) {cost['stored_training_seconds_one_seed']:.0f} s ({ratio:.1f}x), all stored seeds "
          f"{cost['stored_training_seconds_all_seeds']:.0f} s; training extrapolated from the probe's own step time "
          f"{cost['extrapolated_training_seconds_one_seed']:.0f} s")


# ---- advising --------------------------------------------------------------------------------
def advise(args) -> int:
    from ttrlab.advise import candidates
    from ttrlab.advise.cache import ProbeCache, probe_all
    from ttrlab.advise.calibrate import Ridge, feature_matrix
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
    records = probe_all(configs, settings, ProbeCache(args.probes), progress=_progress)
    by = args.by or ("theory" if args.db else "grad_alignment")
    names = model_names(by)
    x = feature_matrix(records, names)
    stored: dict[tuple, list[float]] = {}  # (task, method) -> stored seconds per training run, from --db
    if args.db:
        args.target = args.target or PRIMARY[family_of(configs[0]["attack"])]
        found, calibration = calibration_rows(args, args.target)
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
        return _training_estimate(record, args, config), "extrapolated"

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


def _training_estimate(record: dict, args, config: dict | None = None) -> float:
    """Seconds to train one seed: the probe's full-batch step time per example × the examples a run
    trains on (steps × batch size). Same machine, same load as the probe; evaluation left out."""
    steps = (config or {}).get("max_steps", args.max_steps)
    batch = (config or {}).get("batch_size", args.batch_size)
    return record["step_seconds"] / record["probe"]["n"] * steps * batch


def _label(config: dict) -> str:
    from ttrlab.methods import METHODS

    method = METHODS.get(config["method"])
    return f"{method.describe(config)} {config['attack']} {100 * config['rate']:g}%"


def _progress(done: int, total: int, record: dict) -> None:
    import sys

    print(f"probe {done}/{total}: {record['config']['method']} {record['seconds']:.0f} s", file=sys.stderr)


# ---- argument types --------------------------------------------------------------------------
def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


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
        values.append(None if x == "default" else _finite(x))
    return values
