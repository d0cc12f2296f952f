"""`ttrlab theory ntk|fisher|spectrum|fig3|compare`: argument parsing only; the work is in
`ttrlab.kinds.theory.experiment`, `.spectrum` and `.figures`."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ttrlab.core.errors import UserError
from ttrlab.cli import command_parser
from ttrlab.cli.options import finite_float
from ttrlab.methods.init import KAIMING_DEFAULT_K



def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """The settings of the classification run a theory run stands beside (training-only ones left out)."""
    from ttrlab.cli.options import add_config_options
    from ttrlab.kinds.theory.config import TRAINING_ONLY, TheoryConfig, TheorySettings

    add_config_options(parser, TheoryConfig, skip=(*TRAINING_ONLY, *TheorySettings.field_names()))


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    from ttrlab.cli.options import add_config_options
    from ttrlab.kinds.theory.config import TRAINING_ONLY, TheoryConfig

    add_config_options(parser, TheoryConfig, skip=(*TRAINING_ONLY, "quantity", "fan_in"))
    parser.add_argument("--out", default=None, help="write the result JSON here (atomically)")
    parser.add_argument("--quiet", action="store_true")


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of integers") from None


def _floats(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = None
    if values is None or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of finite numbers")
    return values




MAX_FAN_IN = 65_536  # n of A in R^{r x n}: BERT-large has 1024, LLaMA-3-70B 8192
MAX_SCALES = 1_000


def _check_spectrum_sizes(ranks: list[int], fan_in: int, seed: int) -> None:
    """What an A in R^{r x n} may be here: 1 <= n <= MAX_FAN_IN, 1 <= r <= n, a 32-bit seed."""
    from ttrlab.core.settings import MAX_SEED

    if not 1 <= fan_in <= MAX_FAN_IN:
        raise UserError(f"fan_in {fan_in} must be in [1, {MAX_FAN_IN}]; allowed: at most {MAX_FAN_IN}")
    for r in ranks:
        if not 1 <= r <= fan_in:
            raise UserError(f"rank {r} must be >= 1 and at most fan_in {fan_in} (A is r x n)")
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed {seed} must be in [0, {MAX_SEED}]")


def register(subparsers) -> None:
    theory = command_parser(subparsers, "theory")
    commands = theory.add_subparsers(dest="theory_command", metavar="QUANTITY")
    commands.required = True

    ntk = commands.add_parser("ntk", help="empirical NTK of the method's trainable parameters, M' (Eq. 7), Eqs. 16-17")
    _add_model_options(ntk)
    ntk.set_defaults(func=_model_quantity, quantity="ntk")

    fisher = commands.add_parser("fisher", help="Fisher spectrum (Eq. 8) on a poisoned sample, IB (Eq. 9), H_alpha (Eq. 10)")
    _add_model_options(fisher)
    fisher.set_defaults(func=_model_quantity, quantity="fisher")

    spectrum = commands.add_parser("spectrum", help="Theorem 3.4: eigenvalues of A^T A vs the statement and Marchenko-Pastur")
    spectrum.add_argument("--model", default="minilm", help="fan-in n = this model's hidden size unless --fan-in")
    spectrum.add_argument("--fan-in", type=int, default=None, help="n of A in R^{r x n}")
    spectrum.add_argument("--init", type=str, default=None,
                          help="init strategy, comma list (default: all: kaiming_uniform,gaussian,xavier_normal)")
    spectrum.add_argument("--rank", type=_ints, default=[4, 8, 64, 256], help="comma list of ranks")
    spectrum.add_argument("--init-scale", type=_floats, default=None,
                          help="comma list of variance scales k (Var = k/n); default: 1/3 and 0.99")
    spectrum.add_argument("--alpha", type=finite_float, default=16.0, help="LoRA alpha (scaling s = alpha/r)")
    spectrum.add_argument("--seed", type=int, default=0)
    spectrum.add_argument("--out", default=None, help="JSON output")
    spectrum.add_argument("--figure-dir", default=None, help="write one AᵀA-vs-MP histogram per (rank, scale) here")
    spectrum.set_defaults(func=_spectrum)

    fig3 = commands.add_parser("fig3", help="Figure 3: H'_alpha of A^T A over rank x variance scale")
    fig3.add_argument("--rank", type=_ints, default=[4, 8, 16, 32, 64, 128, 256, 512], help="comma list of ranks")
    fig3.add_argument("--scale-min", type=finite_float, default=0.001)
    fig3.add_argument("--scale-max", type=finite_float, default=2.0)
    fig3.add_argument("--scales", type=int, default=41, help="number of log-spaced scales")
    fig3.add_argument("--fan-in", type=int, default=1024, help="n of A (default 1024: BERT-large, the paper's model)")
    fig3.add_argument("--renyi-alpha", type=finite_float, default=1.0, help="alpha of H' (1 = Shannon, as the paper's figure)")
    fig3.add_argument("--init", default="kaiming_uniform")
    fig3.add_argument("--seed", type=int, default=0)
    fig3.add_argument("--out", default="results/theory/fig3.json", help="JSON output")
    fig3.add_argument("--figure", default=None, help="PNG (default: --out with .png)")
    fig3.set_defaults(func=_fig3)

    compare = commands.add_parser("compare", help="FF vs LoRA at several ranks x init scales, with Theorem 3.6 verdicts")
    _add_run_options(compare)
    compare.add_argument("--ranks", type=_ints, default=[8, 64])
    compare.add_argument("--init-scales", type=_floats, default=[KAIMING_DEFAULT_K, 0.01])
    compare.add_argument("--n", type=int, default=32)
    compare.add_argument("--max-jacobian-mb", type=int, default=None)
    compare.add_argument("--out-dir", default="results/theory/compare")
    compare.add_argument("--quiet", action="store_true")
    compare.set_defaults(func=_compare)


def theory_config_from_args(args: argparse.Namespace, **overrides):
    from ttrlab.cli.options import config_from_args
    from ttrlab.kinds.theory.config import TheoryConfig

    return config_from_args(args, TheoryConfig, **overrides)


def _progress(enabled: bool):
    import sys

    def report(event: str, **info) -> None:
        if enabled:
            details = " ".join(f"{k}={v}" for k, v in info.items())
            print(f"[theory] {event} {details}", file=sys.stderr, flush=True)

    return report


def _model_quantity(args: argparse.Namespace) -> int:
    from ttrlab.cli import print_json
    from ttrlab.cli.options import run_and_write
    from ttrlab.kinds.theory.experiment import THEORY

    config = theory_config_from_args(args, quantity=args.quantity)
    result = run_and_write(THEORY, config, args, f"theory {args.quantity} {config.method} {config.attack}")
    print_json({"metrics": result["metrics"], "compute": result["compute"], "runtime": result["runtime"]})
    return 0


def _spectrum(args: argparse.Namespace) -> int:
    from ttrlab.cli import print_json
    from ttrlab.core.io import check_distinct, check_output_file, check_output_folder, own_folder, write_json_atomic
    from ttrlab.methods import INIT_STRATEGIES
    from ttrlab.kinds.theory.experiment import model_fan_in
    from ttrlab.theory.spectrum import ata_eigenvalues, draw_a, theorem_3_4_check

    strategies = [s.strip() for s in args.init.split(",")] if args.init else INIT_STRATEGIES.names()
    for s in strategies:
        INIT_STRATEGIES.get(s)
    scales = args.init_scale if args.init_scale is not None else [KAIMING_DEFAULT_K, 0.99]
    for k in scales:
        if not (k > 0 and math.isfinite(k)):
            raise UserError(f"init scale {k} must be a finite number > 0")
    for r in args.rank:
        if r < 1:
            raise UserError(f"rank {r} must be >= 1")
    if not args.alpha > 0:
        raise UserError(f"--alpha {args.alpha} must be > 0")
    fan_in = args.fan_in if args.fan_in is not None else model_fan_in(args.model)
    _check_spectrum_sizes(args.rank, fan_in, args.seed)
    if args.out:
        check_output_file(args.out)
    if args.figure_dir:
        check_output_folder(args.figure_dir, "--figure-dir")
    check_distinct({"--out": (args.out, False), "--figure-dir": (args.figure_dir, True)})
    checks = []
    for strategy in strategies:
        for rank in args.rank:
            for k in scales:
                checks.append(theorem_3_4_check(strategy, rank, fan_in, k, args.seed, lora_scaling=args.alpha / rank))
    if args.figure_dir:
        from ttrlab.theory.figures import plot_spectrum_vs_mp

        own_folder(args.figure_dir, "--figure-dir")
        for rank in args.rank:
            for k in scales:
                a, variance = draw_a(strategies[0], rank, fan_in, k, args.seed)
                plot_spectrum_vs_mp(ata_eigenvalues(a), rank, fan_in, variance,
                                    Path(args.figure_dir) / f"ata-{strategies[0]}-r{rank}-k{k:g}.png")
    document = {"fan_in": fan_in, "checks": checks}
    if args.out:
        write_json_atomic(args.out, document)
    rows = [{
        "init": c["strategy"], "r": c["rank"], "k": round(c["scale_k"], 4),
        "stated sigma2*n": round(c["statement_nonzero_eigenvalue"], 4),
        "measured min/mean/max": [round(c["nonzero_eigenvalues"][x], 4) for x in ("min", "mean", "max")],
        "MP [low, high]": [round(c["marchenko_pastur"]["low"], 4), round(c["marchenko_pastur"]["high"], 4)],
        "conditions hold": c["theorem_conditions_hold"],
        "M_delta NSD": c["m_delta"]["negative_semidefinite"],
        "NSD with s^2": c["with_lora_scaling"]["negative_semidefinite"],
    } for c in checks]
    print_json({"fan_in": fan_in, "rows": rows})
    return 0


def _fig3(args: argparse.Namespace) -> int:
    import numpy as np

    from ttrlab.core.io import check_distinct, check_figure_file, check_output_file, write_json_atomic
    from ttrlab.methods import INIT_STRATEGIES
    from ttrlab.theory.figures import plot_fig3
    from ttrlab.theory.spectrum import h_prime_map

    INIT_STRATEGIES.get(args.init)
    if not (0 < args.scale_min < args.scale_max):
        raise UserError(f"scale range [{args.scale_min}, {args.scale_max}] must satisfy 0 < min < max")
    if not 2 <= args.scales <= MAX_SCALES:
        raise UserError(f"--scales {args.scales} must be in [2, {MAX_SCALES}]")
    if args.renyi_alpha < 0:
        raise UserError(f"--renyi-alpha {args.renyi_alpha} must be >= 0")
    _check_spectrum_sizes(args.rank, args.fan_in, args.seed)
    check_output_file(args.out)
    figure = args.figure or str(Path(args.out).with_suffix(".png"))
    check_figure_file(figure, "--figure" if args.figure else "figure (--out with .png)")
    check_distinct({"--out": (args.out, False), "--figure" if args.figure else "the figure (--out with .png)": (figure, False)})
    grid = h_prime_map(args.rank, np.geomspace(args.scale_min, args.scale_max, args.scales), args.fan_in,
                       args.renyi_alpha, args.init, args.seed)
    write_json_atomic(args.out, grid)
    plot_fig3(grid, figure)
    print(json.dumps({"json": args.out, "figure": figure}))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ttrlab.kinds.classification.experiment import load_run_data
    from ttrlab.core.io import check_output_folder, own_folder, write_json_atomic
    from ttrlab.kinds.theory.experiment import compute_theory
    from ttrlab.theory.measures import theorem_3_6_check

    base = theory_config_from_args(args, quantity="all", n=args.n,
                                   **({"max_jacobian_mb": args.max_jacobian_mb} if args.max_jacobian_mb else {}))
    for rank in args.ranks:
        if rank < 1:
            raise UserError(f"--ranks {rank} must be >= 1")
    configs = [("ff", base.replace(method="ff"))]
    for rank in args.ranks:
        for k in args.init_scales:
            configs.append((f"lora-r{rank}-k{k:g}", base.replace(method="lora", rank=rank, init_scale=k)))
    for _, config in configs:  # every config is checked before the first is computed
        config.validate()
    out_dir = check_output_folder(args.out_dir, "--out-dir")
    data = load_run_data(base)
    own_folder(out_dir, "--out-dir")
    progress = _progress(not args.quiet)
    results = {}
    for label, config in configs:
        progress("config", label=label)
        results[label] = compute_theory(config.validate(), progress=progress, data=data)
        write_json_atomic(Path(out_dir) / f"{label}.json", results[label])
    verdicts = {label: theorem_3_6_check(results["ff"], r) for label, r in results.items() if label != "ff"}
    write_json_atomic(Path(out_dir) / "summary.json", {
        "metrics": {label: r["metrics"] for label, r in results.items()},
        "theorem_3_6": verdicts,
    })
    table = Table(title=f"{base.task} · {base.model} · attack {base.attack} ρ={base.rate} · N={base.n} · θ at init")
    columns = ("config", "NTK trace", "NTK trace w/o head", "M'", "|∇Lᵀ∇L̃|", "IB logdet", "IB paper", "H1 norm", "H2 norm", "Thm 3.6 holds", "s")
    for c in columns:
        table.add_column(c, justify="left" if c == "config" else "right")
    for label, r in results.items():
        m = r["metrics"]
        body = m.get("ntk_trace_adapters_only", m.get("ntk_trace_body_only", float("nan")))
        verdict = verdicts.get(label)
        table.add_row(label, f"{m['ntk_trace']:.4g}", f"{body:.4g}", f"{m['m_prime']:.4g}", f"{m['grad_inner_abs']:.4g}",
                      f"{m['fisher_ib_logdet']:.4g}", f"{m['fisher_ib_paper']:.4g}", f"{m['fisher_renyi_1_normalized']:.4g}",
                      f"{m['fisher_renyi_2_normalized']:.4g}",
                      "–" if verdict is None else ("yes" if verdict["holds_all"] else
                                                   f"no ({sum(not v['holds'] for v in verdict['comparisons'].values())} fail)"),
                      f"{r['method'].get('lora_scaling', float('nan')):.3g}")
    Console().print(table)
    print(f"results in {out_dir}/")
    return 0
