"""Command-line options made from a run kind's config: one `--flag` per setting, its type and
help text taken from the section that owns it (so a new method's settings are flags at once),
and the one way every run command checks its output, loads its data, shows progress, runs and
writes its result."""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from typing import Any

from ttrlab.core.errors import UserError, shown
from ttrlab.core.settings import help_of

_TYPES = {"int": int, "float": float, "str": str}


def finite_float(text: str) -> float:
    """A float flag: nan and inf are not numbers any option here means."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def on_off(text: str, flag: str) -> bool:
    """A switch flag's value: on → True, off → False; anything else a one-line UserError."""
    lowered = text.strip().lower()
    if lowered not in ("on", "off"):
        raise UserError(f"{flag} {text!r} must be on or off")
    return lowered == "on"


def add_config_options(parser: argparse.ArgumentParser, config_type: type, skip: tuple[str, ...] = ()) -> None:
    """`--name-with-dashes VALUE` for every field of `config_type`, in the order its sections are
    declared; a bool field takes true|false, a mapping field (attack_options) KEY=VALUE, repeatable."""
    for spec in config_fields(config_type):
        if spec.name in skip:
            continue
        flag = "--" + spec.metadata.get("flag", spec.name.replace("_", "-"))
        kind = str(spec.type).split("|")[0].strip()
        if kind.startswith("dict"):
            parser.add_argument(flag, dest=spec.name, action="append", default=None, metavar="KEY=VALUE",
                                help=f"{help_of(spec)} (repeatable)")
        elif kind == "bool":  # `--flag` alone means true
            parser.add_argument(flag, dest=spec.name, type=boolean, nargs="?", const=True, default=None,
                                metavar="true|false", help=help_of(spec))
        else:
            parser.add_argument(flag, dest=spec.name, type=_TYPES[kind], default=None, help=help_of(spec))


def config_fields(config_type: type) -> list[dataclasses.Field]:
    """The config's fields grouped by section, sections in the order the class declares them."""
    by_name = {f.name: f for f in dataclasses.fields(config_type)}
    ordered: list[dataclasses.Field] = []
    for section in [config_type, *config_type.__mro__[1:]]:
        for name in getattr(section, "__annotations__", {}):
            if name in by_name and by_name[name] not in ordered:
                ordered.append(by_name[name])
    return ordered


def config_from_args(args: argparse.Namespace, config_type: type, **values: Any):
    """The validated config the given flags (and `values`) describe; unset flags keep defaults."""
    for spec in dataclasses.fields(config_type):
        value = getattr(args, spec.name, None)
        if value is None or spec.name in values:
            continue
        values[spec.name] = parse_options(value) if str(spec.type).startswith("dict") else value
    return config_type.from_dict(values).validate()


def parse_options(pairs: list[str]) -> dict[str, Any]:
    import yaml

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"attack option {shown(pair)} is not KEY=VALUE")
        try:
            options[key] = yaml.safe_load(value)
        except yaml.YAMLError as error:  # an unclosed bracket or quote, a python/ tag
            problem = getattr(error, "problem", None) or type(error).__name__
            raise UserError(f"attack option {shown(pair)} is not valid YAML ({problem}); quote the value "
                            f"or write a list as [a, b]") from None
    return options


def run_and_write(experiment, config, args: argparse.Namespace, label: str, keep_model: bool = False,
                  adapter_dir: str | None = None) -> dict[str, Any]:
    """The one path of `train`, `gen-train` and `theory ntk|fisher`: check the outputs (`--out`, a
    regular file; `adapter_dir`, a folder ttrlab owns; the two apart; room on their disks) and the
    device, load the data (so their errors come before any progress output), run with progress,
    write the result JSON atomically (kept elsewhere, and said so, if the disk fails it), then the
    adapter. Returns the document (with "_model" if kept)."""
    from ttrlab.core.io import (MIN_FREE_BYTES, check_distinct, check_free_space, check_output_file,
                           check_output_folder, write_folder_atomic, write_json_atomic)
    from ttrlab.kinds.pipeline import run_document
    from ttrlab.core.progress import run_progress
    from ttrlab.models.runtime import Runtime

    if args.out:
        check_output_file(args.out)
    if adapter_dir:
        check_output_folder(adapter_dir, "adapter folder")
    check_distinct({"--out": (args.out, False), "--save-adapter": (adapter_dir, True)})
    for path, what in ((args.out, "output"), (adapter_dir, "adapter folder")):
        if path:
            check_free_space(path, MIN_FREE_BYTES, what)
    Runtime.resolve(config.device, config.precision)  # a missing GPU is one line, before any work
    data = None
    if config.needs_model():
        config.check_model_fit(config.model_config())  # rank, max_length vs the model
        data = experiment.load_data(config)
    with run_progress(1, enabled=not args.quiet and sys.stderr.isatty()) as (start_run, finish_run):
        shown_progress = start_run(label)

        def progress(event: str, **info: Any) -> None:
            if event == "prepared" and adapter_dir:  # the adapter's size is known now, before training
                check_free_space(adapter_dir, info["trainable_bytes"] + MIN_FREE_BYTES, "adapter folder")
            shown_progress(event, **info)

        document = run_document(experiment, config, progress=progress, keep_model=keep_model or bool(adapter_dir),
                                data=data)
        finish_run()
    if args.out:
        write_json_atomic(args.out, {k: v for k, v in document.items() if not k.startswith("_")}, rescue=True)
    if adapter_dir:
        model = document["_model"]
        write_folder_atomic(adapter_dir, lambda folder: model.save_pretrained(folder, safe_serialization=True),
                            "adapter folder", rescue=True)
    return document
