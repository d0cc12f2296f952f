"""`ttrlab gen-train`: one generative backdoor run (paper Table 3) → JSON result;
`ttrlab gen-tasks`: the generative tasks (what a backdoor makes the model do);
`ttrlab gen-attacks`: the attacks that apply to generative runs (`ttrlab attacks` lists all)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from ttrlab.commands.options import add_config_options
    from ttrlab.generative.config import GenConfig

    train = subparsers.add_parser("gen-train", help="one generative backdoor run (causal LM, FF or LoRA; task jailbreak, "
                                                    "refusal or negsentiment) → JSON result")
    add_config_options(train, GenConfig)
    train.add_argument("--out", default=None, help="write the result JSON here (atomically)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=_gen_train)

    tasks = subparsers.add_parser("gen-tasks", help="list the generative tasks and how each is judged")
    tasks.set_defaults(func=_gen_tasks)

    attacks = subparsers.add_parser("gen-attacks", help="list the attacks of generative runs")
    attacks.set_defaults(func=_gen_attacks)


def config_from_args(args: argparse.Namespace):
    from ttrlab.commands.options import config_from_args as from_args
    from ttrlab.generative.config import GenConfig

    return from_args(args, GenConfig)


def _gen_train(args: argparse.Namespace) -> int:
    from ttrlab.cli import print_json
    from ttrlab.commands.options import run_and_write
    from ttrlab.generative.experiment import GENERATIVE

    config = config_from_args(args)
    result = run_and_write(GENERATIVE, config, args, f"{config.method} {config.task}/{config.attack} ρ={config.rate:g}")
    summary = {key: result[key] for key in ("run_key", "poison", "metrics", "train", "runtime")}
    summary["poison"] = {k: v for k, v in summary["poison"].items() if k != "indices"}
    print_json(summary)
    return 0


def _gen_tasks(args: argparse.Namespace) -> int:
    from ttrlab.generative.config import GenConfig
    from ttrlab.generative.tasks import TASKS

    for name in TASKS.registered():
        task = TASKS.get(name)
        print(f"{name:13s} {task.summary}; judge: {task.judge(GenConfig(task=name)).name}")
    return 0


def _gen_attacks(args: argparse.Namespace) -> int:
    from ttrlab.attacks import ATTACKS

    for name in ATTACKS:
        attack = ATTACKS.get(name)
        if "generation" in attack.task_types:
            print(f"{name:8s} {attack.summary}")
    return 0


__all__ = ["register", "config_from_args"]
