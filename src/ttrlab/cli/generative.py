"""`ttrlab gen-train`: one generative backdoor run (paper Table 3) → JSON result."""
from __future__ import annotations

import argparse
from ttrlab.cli import command_parser


def register(subparsers) -> None:
    from ttrlab.cli.options import add_config_options
    from ttrlab.kinds.generative.config import GenConfig

    train = command_parser(subparsers, "gen-train")
    add_config_options(train, GenConfig)
    train.add_argument("--out", default=None, help="write the result JSON here (atomically)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=_gen_train)



def config_from_args(args: argparse.Namespace):
    from ttrlab.cli.options import config_from_args as from_args
    from ttrlab.kinds.generative.config import GenConfig

    return from_args(args, GenConfig)


def _gen_train(args: argparse.Namespace) -> int:
    from ttrlab.cli import print_json
    from ttrlab.cli.options import run_and_write
    from ttrlab.kinds.generative.experiment import GENERATIVE

    config = config_from_args(args)
    result = run_and_write(GENERATIVE, config, args, f"{config.method} {config.task}/{config.attack} ρ={config.rate:g}")
    summary = {key: result[key] for key in ("run_key", "poison", "metrics", "train", "runtime")}
    summary["poison"] = {k: v for k, v in summary["poison"].items() if k != "indices"}
    print_json(summary)
    return 0
