"""The listing commands: what ttrlab has registered. `ttrlab tasks|attacks|methods|defenses|
threats|gen-tasks|gen-attacks`, and the same under `ttrlab list WHAT` (plus `ttrlab list kinds`). Each
reads its registry only: no model, no torch."""
from __future__ import annotations

import argparse

from ttrlab.cli import command_parser


def register(subparsers) -> None:
    tasks = command_parser(subparsers, "tasks")
    tasks.add_argument("--task", action="append", default=[], metavar="PATH.yaml",
                       help="show this task file's task instead (repeatable)")
    tasks.set_defaults(func=_tasks)
    for name, func in (("attacks", _attacks), ("methods", _methods), ("defenses", _defenses), ("threats", _threats),
                       ("gen-tasks", _gen_tasks), ("gen-attacks", _gen_attacks)):
        command_parser(subparsers, name).set_defaults(func=func)
    listing = command_parser(subparsers, "list")
    listing.add_argument("what", choices=sorted(LISTINGS), help="what to list")
    listing.add_argument("--task", action="append", default=[], metavar="PATH.yaml",
                         help="tasks: show this task file's task instead (repeatable)")
    listing.set_defaults(func=lambda args: LISTINGS[args.what](args))


def _tasks(args: argparse.Namespace) -> int:
    from ttrlab.data import TASKS, get_task

    for name in args.task or TASKS:
        spec = get_task(name)
        kind = "pair" if spec.is_pair else "single"
        line = (f"{spec.name:6s} {kind:6s} fields={','.join(spec.text_fields)} labels={'/'.join(spec.label_names)} "
                f"positive={spec.positive_label} backdoor_target={spec.backdoor_target}")
        if spec.is_file_task:  # where its data comes from, and the digest its run keys hold
            source = (f"hub={spec.hub.path}" if spec.hub is not None
                      else " ".join(f"{split}={path}({fmt})" for split, path, fmt in spec.files))
            line += f" {source} sha256={spec.content_sha256()[:12]} file={spec.origin}"
        print(line)
    return 0


def _attacks(args: argparse.Namespace) -> int:
    """Every attack of every run kind: its family, the kinds it applies to, what a report leads
    with and the robustness it is measured by."""
    from ttrlab.attacks import ATTACKS

    for name in ATTACKS:
        attack = ATTACKS.get(name)
        kinds = ",".join(attack.task_types)
        headline = "; ".join(f"{t}: {', '.join(attack.headline_metrics(t))}" for t in attack.task_types)
        print(f"{name:8s} {attack.family.name:10s} {kinds:25s} {attack.summary}  [headline {headline}; "
              f"robustness measure: {attack.robustness_measure() or '–'}]")
    return 0


def _methods(args: argparse.Namespace) -> int:
    from ttrlab.methods import METHODS

    # Trainable parameter counts are not printed: they need the model loaded and each method
    # applied (PiSSA's SVDs, seconds on a CPU); `ttrlab train` records them in every result.
    width = max(len(name) for name in METHODS.registered())
    for name in METHODS.registered():
        method = METHODS.get(name)
        knobs = ", ".join(method.settings.field_names()) if method.settings else "none"
        print(f"{name:{width}s} {','.join(method.task_types):25s} {','.join(method.kinds):24s} {method.summary}  "
              f"[settings: {knobs}]")
    return 0


def _defenses(args: argparse.Namespace) -> int:
    from ttrlab.defenses import DEFENSES

    for name in DEFENSES.registered():
        defense = DEFENSES.get(name)
        print(f"{name:22s} {defense.kind:13s} {defense.summary}  [settings: {', '.join(defense.uses) or 'none'}]")
    return 0


def _threats(args: argparse.Namespace) -> int:
    from ttrlab.threats import DEFAULT_THREAT, THREATS

    for name in THREATS.registered():
        threat = THREATS.get(name)
        default = " (default)" if name == DEFAULT_THREAT else ""
        print(f"{name}{default}: {threat.summary}\n  measures: {threat.measures}\n  stages: {threat.stages}\n"
              f"  settings: {', '.join(threat.uses) or 'none'}; sources: {threat.sources}")
    return 0


def _gen_tasks(args: argparse.Namespace) -> int:
    from ttrlab.kinds.generative.config import GenConfig
    from ttrlab.kinds.generative.tasks import GENERATIVE_TASKS

    for name in GENERATIVE_TASKS.registered():
        task = GENERATIVE_TASKS.get(name)
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


def _kinds(args: argparse.Namespace) -> int:
    """The run kinds a sweep spec may name (`kind:`), plugins of TTRLAB_PLUGINS included."""
    from ttrlab.kinds.registry import RUN_KINDS

    for name in RUN_KINDS.registered():
        kind = RUN_KINDS.get(name)
        where = getattr(kind, "module", type(kind).__module__)
        print(f"{name:12s} {where}")
    return 0


LISTINGS = {"tasks": _tasks, "attacks": _attacks, "methods": _methods, "defenses": _defenses, "threats": _threats,
            "kinds": _kinds, "gen-tasks": _gen_tasks, "gen-attacks": _gen_attacks}
