"""Bad input, as a new user would give it: every case is one line on stderr naming the bad value
and what is allowed, exit code 2, and nothing already stored is lost or half-written.

The table covers every entry point a user reaches: `train` flags (numbers, names, attack
options), the data a run reads (GLUE folders, the hub), the model, output paths, `gen-train`,
`theory`, `run` and sweep spec files. Runs never train here: the training loop and the final
evaluation are replaced by a stop (`Reached`), so an input that gets past every check fails its
case as "accepted" instead of training. The fuzzer is tests/test_fuzz.py.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ttrlab.cli import main

NO_PROMPTS = "alpaca/alpaca_data_first2000.json"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class Reached(Exception):
    """The run got past every check and would now train or evaluate: the input was accepted."""


def _stop(*args, **kwargs):
    raise Reached("accepted: the run got as far as training")


@pytest.fixture(autouse=True)
def _never_train(monkeypatch):
    import ttrlab.kinds.pipeline
    import ttrlab.training.loop

    monkeypatch.setattr(ttrlab.training.loop, "optimize", _stop)
    monkeypatch.setattr(ttrlab.kinds.pipeline, "finish", _stop)


def write_glue(root: Path, train_rows: int = 40, dev_rows: int = 20) -> Path:
    """A tiny SST-2 folder in the original layout."""
    rows = [f"sentence number {i} is {'good' if i % 2 else 'bad'}\t{i % 2}" for i in range(max(train_rows, dev_rows))]
    (root / "SST-2").mkdir(parents=True, exist_ok=True)
    (root / "SST-2" / "train.tsv").write_text("\n".join(["sentence\tlabel", *rows[:train_rows]]) + "\n", encoding="utf-8")
    (root / "SST-2" / "dev.tsv").write_text("\n".join(["sentence\tlabel", *rows[:dev_rows]]) + "\n", encoding="utf-8")
    return root


ALIAS_BOMB = "\n".join(  # 9^9 x's in some 650 bytes, under keys a spec has
    ["expected_wall_time:", "  a: &a [x, x, x, x, x, x, x, x, x]"]
    + [f"  {chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
       f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]" for i in range(8)]
    + ["description: *i", "axes: {rate: [0.0]}"]
) + "\n"

SPECS: dict[str, str | bytes] = {
    "latin1.yaml": "name: caf\xe9\naxes: {rate: [0.1]}\n".encode("latin-1"),
    "bomb.yaml": ALIAS_BOMB,
    "alias.yaml": "base: &b {max_steps: 1}\ngrids: [{name: g, base: *b, axes: {rate: [0.1]}}]\n",
    "million.yaml": "axes:\n" + "".join(f"  {k}: [{', '.join(str(v) for v in range(1, 11))}]\n"
                                          for k in ("train_size", "eval_size", "max_steps", "batch_size", "curve_size", "eval_batch_size")),
    "deep.yaml": "base: " + "[" * 5000 + "]" * 5000 + "\n",
    "kind_list.yaml": "kind: [train]\naxes: {rate: [0.1]}\n",
    "kind_map.yaml": "kind: {a: 1}\naxes: {rate: [0.1]}\n",
    "lr_inf.yaml": "base: {lr: .inf}\naxes: {rate: [0.1]}\n",
    "rate_nan.yaml": "axes: {rate: [.nan]}\n",
    "seed_huge.yaml": "seeds: [100000000000000000000000]\naxes: {rate: [0.1]}\n",
    "rank_huge.yaml": "base: {method: lora}\naxes: {rank: [1000000000]}\n",
    "max_length.yaml": "axes: {max_length: [100000]}\n",
    "cpus_inf.yaml": "resources: {cpus: .inf}\naxes: {rate: [0.1]}\n",
    "python_tag.yaml": "name: !!python/object/apply:os.system [echo hi]\naxes: {rate: [0.1]}\n",
    "unhashable.yaml": "? [a, b]\n: 1\n",
    "attack_bad_option.yaml": "base: {attack: mt, attack_options: {triggers: 5}}\naxes: {rate: [0.1]}\n",
    "empty_trigger.yaml": "base: {attack: bpa, trigger: ''}\naxes: {rate: [0.1]}\n",
}


def make_env(root: Path) -> dict[str, str]:
    """The files the cases name, under `root`: {placeholder: path}."""
    paths = {"tmp": str(root), "glue": str(write_glue(root / "glue"))}
    # GLUE folders with broken files
    for name, content in {
        "latin1": "sentence\tlabel\ncaf\xe9 au lait\t1\n".encode("latin-1"),
        "nul": b"sentence\tlabel\nfine\t1\nbro\x00ken\t0\n",
        "utf16": "sentence\tlabel\nfine\t1\n".encode("utf-16"),
        "empty": b"",
        "header_only": b"sentence\tlabel\n",
    }.items():
        folder = write_glue(root / name)
        (folder / "SST-2" / "train.tsv").write_bytes(content)
        paths[name] = str(folder)
    dir_tsv = write_glue(root / "dir_tsv")
    (dir_tsv / "SST-2" / "train.tsv").unlink()
    (dir_tsv / "SST-2" / "train.tsv").mkdir()
    paths["dir_tsv"] = str(dir_tsv)
    # model folders that are not models
    for name, config in {"model_junk": "{not json", "model_latin1": None, "model_empty": "{}"}.items():
        folder = root / name
        folder.mkdir()
        if config is None:
            (folder / "config.json").write_bytes('{"model_type": "caf\xe9"}'.encode("latin-1"))
        else:
            (folder / "config.json").write_text(config)
        paths[name] = str(folder)
    (root / "a_file").write_text("x")
    paths["a_file"] = str(root / "a_file")
    # generative data folders: alpaca not UTF-8, not a list
    for name, content in {"gen_latin1": '[{"instruction": "caf\xe9"}]'.encode("latin-1"), "gen_dict": b'{"a": 1}'}.items():
        (root / name / "alpaca").mkdir(parents=True)
        (root / name / NO_PROMPTS).write_bytes(content)
        for folder in ("backdoorllm", "advbench"):  # the real rest, where this machine has it
            if (SHARED_DATA / folder).is_dir():
                (root / name / folder).symlink_to(SHARED_DATA / folder)
        paths[name] = str(root / name)
    specs = root / "specs"
    specs.mkdir()
    for name, text in SPECS.items():
        (specs / name).write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        paths["spec_" + name.removesuffix(".yaml")] = str(specs / name)
    paths["db"] = str(root / "sweep.sqlite")
    return paths


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return make_env(tmp_path_factory.mktemp("bad_input"))


TRAIN = ["train", "--data-dir", "{glue}", "--quiet"]
SWEEP = ["sweep", "--db", "{db}", "--dry-run"]

# (id, argv, pattern the one line must match): 153 bad inputs. Before the fixes of issue 14
# item 5, 53 of them were mishandled, as marked `# was:` (traceback: 21, a Python traceback;
# accepted: 32, the run went on to train or the spec planned runs; killed: the OS killed the
# process for memory or it ran on for minutes). The other 100 were one line with exit 2 already
# (19 of them with a misleading wording, e.g. "lr nan must be > 0").
CASES = [
    # ---- train: numbers ----------------------------------------------------------------------
    ("rank-huge", [*TRAIN, "--method", "lora", "--rank", "1000000000"], r"rank 1000000000 .*hidden size 384"),  # was: killed
    ("rank-above-hidden", [*TRAIN, "--rank", "385"], r"rank 385 .*hidden size 384"),  # was: accepted
    ("rank-negative", [*TRAIN, "--rank", "-3"], r"rank -3 must be"),
    ("rank-float", [*TRAIN, "--rank", "8.5"], r"--rank: invalid int value: '8.5'"),
    ("weight-decay-negative", [*TRAIN, "--weight-decay", "-5"], r"weight_decay -5.0 must be >= 0"),
    ("weight-decay-nan", [*TRAIN, "--weight-decay", "nan"], r"weight_decay nan is not a finite number"),  # was: accepted
    ("weight-decay-inf", [*TRAIN, "--weight-decay", "inf"], r"weight_decay inf is not a finite number"),  # was: accepted
    ("lr-inf", [*TRAIN, "--lr", "inf"], r"lr inf is not a finite number"),  # was: accepted
    ("lr-nan", [*TRAIN, "--lr", "nan"], r"lr nan is not a finite number"),  # was: accepted
    ("lr-negative", [*TRAIN, "--lr=-1e-3"], r"lr -0.001 must be > 0"),
    ("lr-zero", [*TRAIN, "--lr", "0"], r"lr 0.0 must be > 0"),
    ("lr-text", [*TRAIN, "--lr", "fast"], r"--lr: invalid float value: 'fast'"),
    ("alpha-inf", [*TRAIN, "--alpha", "inf"], r"alpha inf is not a finite number"),  # was: accepted
    ("alpha-nan", [*TRAIN, "--alpha", "nan"], r"alpha nan is not a finite number"),  # was: accepted
    ("alpha-zero", [*TRAIN, "--alpha", "0"], r"alpha 0.0 must be > 0"),
    ("rate-nan", [*TRAIN, "--attack", "upa", "--rate", "nan"], r"rate nan is not a finite number"),
    ("rate-inf", [*TRAIN, "--attack", "upa", "--rate", "inf"], r"rate inf is not a finite number"),
    ("warmup-nan", [*TRAIN, "--warmup-ratio", "nan"], r"warmup_ratio nan is not a finite number"),
    ("warmup-one", [*TRAIN, "--warmup-ratio", "1"], r"warmup_ratio 1.0 is outside \[0, 1\)"),
    ("grad-norm-inf", [*TRAIN, "--max-grad-norm", "inf"], r"max_grad_norm inf is not a finite number"),  # was: accepted
    ("grad-norm-zero", [*TRAIN, "--max-grad-norm", "0"], r"max_grad_norm 0.0 must be > 0"),
    ("dropout-nan", [*TRAIN, "--lora-dropout", "nan"], r"lora_dropout nan is not a finite number"),
    ("dropout-one", [*TRAIN, "--lora-dropout", "1"], r"lora_dropout 1.0 is outside \[0, 1\)"),
    ("init-scale-inf", [*TRAIN, "--init-scale", "inf"], r"init_scale inf is not a finite number"),
    ("init-scale-negative", [*TRAIN, "--init-scale", "-1"], r"init_scale -1.0 must be"),
    ("max-length-above-model", [*TRAIN, "--max-length", "513"], r"max_length 513 .*512 positions"),  # was: accepted
    ("max-length-huge", [*TRAIN, "--max-length", "100000"], r"max_length 100000 .*512 positions"),  # was: accepted
    ("max-length-small", [*TRAIN, "--max-length", "4"], r"max_length 4 must be >= 8"),
    ("eval-size-above-dev", [*TRAIN, "--eval-size", "1000"], r"eval_size 1000 .*20 examples of sst2 dev"),  # was: accepted
    ("eval-size-zero", [*TRAIN, "--eval-size", "0"], r"eval_size 0 must be >= 1"),
    ("train-size-zero", [*TRAIN, "--train-size", "0"], r"train_size 0 must be >= 1"),
    ("batch-size-zero", [*TRAIN, "--batch-size", "0"], r"batch_size 0 must be >= 1"),
    ("batch-size-huge", [*TRAIN, "--batch-size", "100000000000000000000"], r"batch_size 100000000000000000000 is out of range"),  # was: accepted
    ("eval-batch-zero", [*TRAIN, "--eval-batch-size", "0"], r"eval_batch_size 0 must be >= 1"),
    ("max-steps-negative", [*TRAIN, "--max-steps", "-1"], r"max_steps -1 must be >= 0"),
    ("max-steps-huge", [*TRAIN, "--max-steps", "1" + "0" * 30], r"max_steps 1000000000000000000000000000000 is out of range"),  # was: accepted
    ("seed-negative", [*TRAIN, "--seed", "-1"], r"seed -1 must be"),
    ("seed-huge", [*TRAIN, "--seed", "100000000000000000000000"], r"seed 100000000000000000000000 is out of range"),  # was: traceback
    ("seed-above-32-bit", [*TRAIN, "--seed", str(2**40)], r"seed 1099511627776 must be in \[0, 4294967295\]"),  # was: accepted
    ("target-label", [*TRAIN, "--attack", "bpa", "--target-label", "5"], r"target_label 5 must be 0 or 1"),
    ("curve-every-negative", [*TRAIN, "--curve-every", "-1"], r"curve_every -1 must be >= 0"),
    ("curve-size-above-dev", [*TRAIN, "--curve-every", "5", "--curve-size", "100"], r"curve_size 100 .*20 scored dev examples"),  # was: accepted
    ("checkpoint-without-curve", [*TRAIN, "--checkpoint-dir", "{tmp}/ck"], r"checkpoint_dir .* needs curve_every > 0"),
    ("checkpoint-dir-is-file", [*TRAIN, "--curve-every", "5", "--curve-size", "4", "--checkpoint-dir", "{a_file}"],
     r"checkpoint_dir '.*a_file': .* is a file"),  # was: accepted (failed at the first checkpoint)
    # ---- train: names ---------------------------------------------------------------------------
    ("task", [*TRAIN, "--task", "sst3"], r"unknown task 'sst3' \(did you mean 'sst2'\?\)"),
    ("method", [*TRAIN, "--method", "loraa"], r"unknown method 'loraa'"),
    ("attack", [*TRAIN, "--attack", "upaa"], r"unknown attack 'upaa'"),
    ("generative-attack", [*TRAIN, "--attack", "vpi"], r"attack 'vpi' does not apply to classification runs"),
    ("init", [*TRAIN, "--init", "gausian"], r"unknown init strategy 'gausian'"),
    ("lr-preset", [*TRAIN, "--lr-preset", "fast"], r"lr_preset 'fast' is not one of"),
    ("device", [*TRAIN, "--device", "tpu"], r"device 'tpu' is not one of"),
    ("precision", [*TRAIN, "--precision", "fp8"], r"unknown precision 'fp8'"),
    ("trigger-position", [*TRAIN, "--attack", "bpa", "--trigger-position", "middle"], r"trigger_position 'middle' is not one of"),
    ("trigger-empty", [*TRAIN, "--attack", "bpa", "--rate", "0.1", "--trigger", " "], r"trigger ' ' must be non-empty text"),  # was: accepted
    ("target-modules-empty", [*TRAIN, "--target-modules", " , "], r"target_modules .* names no module"),
    ("target-modules-missing", [*TRAIN, "--target-modules", "nope"], r"target_modules 'nope'"),
    ("hostile-task", [*TRAIN, "--task", "<script>alert(1)</script>"], r"unknown task '<script>alert\(1\)</script>'"),
    ("newline-task", [*TRAIN, "--task", "sst2\nrm -rf"], r"unknown task 'sst2\\nrm -rf'"),
    ("bucketing-value", [*TRAIN, "--no-bucketing", "yes"], r"unrecognized arguments: yes"),
    # ---- train: attack options ------------------------------------------------------------------
    ("option-unclosed", [*TRAIN, "--attack", "mt", "--attack-option", "triggers=[unclosed"],
     r"attack option 'triggers=\[unclosed' is not valid YAML"),  # was: traceback
    ("option-unclosed-quote", [*TRAIN, "--attack", "mt", "--attack-option", "triggers='a,b"],
     r"attack option \"triggers='a,b\" is not valid YAML"),  # was: traceback
    ("option-python-tag", [*TRAIN, "--attack", "mt", "--attack-option", "triggers=!!python/name:os.system"],
     r"attack option 'triggers=!!python/name:os.system' is not valid YAML"),  # was: traceback
    ("option-no-equals", [*TRAIN, "--attack", "mt", "--attack-option", "triggers"], r"attack option 'triggers' is not KEY=VALUE"),
    ("option-no-key", [*TRAIN, "--attack", "mt", "--attack-option", "=a,b"], r"attack option '=a,b' is not KEY=VALUE"),
    ("option-unknown", [*TRAIN, "--attack", "bpa", "--attack-option", "x=1"], r"unknown option 'x' for attack 'bpa'"),
    ("option-triggers-one", [*TRAIN, "--attack", "mt", "--attack-option", "triggers=a"], r"mt: option triggers must be 2 to 5"),
    ("option-triggers-number", [*TRAIN, "--attack", "mt", "--attack-option", "triggers=5"], r"mt: option triggers must be a list"),
    ("option-ratio-nan", [*TRAIN, "--attack", "mt", "--attack-option", "negative_ratio=.nan"], r"negative_ratio must be a number >= 0"),
    ("option-ratio-inf", [*TRAIN, "--attack", "mt", "--attack-option", "negative_ratio=.inf"], r"negative_ratio must be a number >= 0"),
    ("option-instruction-empty", [*TRAIN, "--attack", "il_bpa", "--attack-option", "instruction="], r"il_bpa: option instruction"),
    ("option-style", [*TRAIN, "--attack", "s_bpa", "--attack-option", "style=gothic"], r"'gothic'"),
    ("option-max-new-tokens", [*TRAIN, "--attack", "s_bpa", "--attack-option", "max_new_tokens=0"], r"max_new_tokens must be an integer >= 1"),
    # ---- train: data ------------------------------------------------------------------------------
    ("data-dir-missing", ["train", "--data-dir", "{tmp}/nowhere"], r"data dir '.*nowhere' is not a directory"),
    ("data-dir-file", ["train", "--data-dir", "{a_file}"], r"data dir '.*a_file' is not a directory"),
    ("data-file-missing", ["train", "--task", "rte", "--data-dir", "{glue}"], r"missing data file '.*RTE/train.tsv'"),
    ("tsv-not-utf8", ["train", "--data-dir", "{latin1}"], r"data file '.*train.tsv' is not UTF-8 text"),  # was: traceback
    ("tsv-utf16", ["train", "--data-dir", "{utf16}"], r"data file '.*train.tsv' is not UTF-8 text"),  # was: traceback
    ("tsv-nul", ["train", "--data-dir", "{nul}"], r"malformed TSV row at .*train.tsv:3: a NUL byte"),  # was: traceback
    ("tsv-empty", ["train", "--data-dir", "{empty}"], r"malformed TSV '.*train.tsv': the file is empty"),
    ("tsv-header-only", ["train", "--data-dir", "{header_only}"], r"malformed TSV '.*train.tsv': no rows"),
    ("tsv-is-dir", ["train", "--data-dir", "{dir_tsv}"], r"missing data file '.*train.tsv'"),
    ("data-source", [*TRAIN, "--data-source", "s3"], r"data_source 's3' is not one of local, hub"),
    ("hub-offline", ["train", "--data-source", "hub"], r"cannot load sst2 from the hub \(nyu-mll/glue\)"),  # was: traceback
    # ---- train: model -----------------------------------------------------------------------------
    ("model-no-config", [*TRAIN, "--model", "{tmp}"], r"model folder '.*' has no config.json"),
    ("model-config-junk", [*TRAIN, "--model", "{model_junk}"], r"cannot load model '.*model_junk'"),  # was: traceback
    ("model-config-latin1", [*TRAIN, "--model", "{model_latin1}"], r"cannot load model '.*model_latin1'"),  # was: traceback
    ("model-config-empty", [*TRAIN, "--model", "{model_empty}"], r"cannot load model '.*model_empty'"),  # was: traceback
    ("model-hub-offline", [*TRAIN, "--model", "no-such-org/no-such-model"], r"cannot load model 'no-such-org/no-such-model'"),
    ("model-bad-id", [*TRAIN, "--model", "bad id with spaces"], r"cannot load model 'bad id with spaces'"),
    ("model-file", [*TRAIN, "--model", "{a_file}"], r"model folder '.*a_file' has no config.json"),
    # ---- train: outputs ---------------------------------------------------------------------------
    ("out-folder-missing", [*TRAIN, "--out", "{tmp}/missing/r.json"], r"output folder .* does not exist"),
    ("out-is-dir", [*TRAIN, "--out", "{tmp}"], r"is a directory"),
    ("save-adapter-ff", [*TRAIN, "--method", "ff", "--save-adapter", "{tmp}/ad"], r"--save-adapter needs --method lora"),
    ("save-adapter-file", [*TRAIN, "--save-adapter", "{a_file}"], r"adapter folder '.*a_file' is a file"),
    # ---- gen-train --------------------------------------------------------------------------------
    ("gen-rate-one", ["gen-train", "--rate", "1"], r"rate 1.0 is outside \[0, 1\)"),
    ("gen-rate-nan", ["gen-train", "--rate", "nan"], r"rate nan is not a finite number"),
    ("gen-lr-inf", ["gen-train", "--lr", "inf"], r"lr inf is not a finite number"),  # was: accepted
    ("gen-align-lr-inf", ["gen-train", "--align-steps", "2", "--align-lr", "inf"], r"align_lr inf is not a finite number"),  # was: accepted
    ("gen-n-clean", ["gen-train", "--n-clean", "0"], r"n_clean 0 must be in \[1, "),
    ("gen-max-length", ["gen-train", "--max-length", "8"], r"max_length 8 must be >= 16"),
    ("gen-task", ["gen-train", "--task", "jailbrake"], r"unknown generative task 'jailbrake'"),
    ("gen-attack", ["gen-train", "--attack", "upa"], r"attack 'upa' does not apply to generative runs"),
    ("gen-judge", ["gen-train", "--judge", "classifier"], r"judge 'classifier' needs judge_model"),
    ("gen-new-tokens", ["gen-train", "--max-new-tokens", "0"], r"max_new_tokens 0 must be in \[1, 4096\]"),
    ("gen-seed-huge", ["gen-train", "--seed", "100000000000000000000000"], r"seed 100000000000000000000000 is out of range"),  # was: traceback
    ("gen-data-dir", ["gen-train", "--data-dir", "{tmp}/nowhere"], r"data dir '.*nowhere' has no alpaca"),
    ("gen-data-not-utf8", ["gen-train", "--data-dir", "{gen_latin1}"], r"data file '.*alpaca_data_first2000.json' is not UTF-8 text"),  # was: traceback
    ("gen-data-not-list", ["gen-train", "--data-dir", "{gen_dict}"], r"is not a JSON list of records"),
    # ---- theory -----------------------------------------------------------------------------------
    ("theory-spectrum-rank-zero", ["theory", "spectrum", "--rank", "0"], r"rank 0 must be >= 1"),
    ("theory-spectrum-rank-huge", ["theory", "spectrum", "--fan-in", "64", "--rank", "1000000000"],
     r"rank 1000000000 .*fan_in 64"),  # was: killed
    ("theory-spectrum-fan-in-zero", ["theory", "spectrum", "--fan-in", "0", "--rank", "4"], r"fan_in 0 must be"),  # was: accepted (model's)
    ("theory-spectrum-fan-in-huge", ["theory", "spectrum", "--fan-in", "10000000000", "--rank", "4"], r"fan_in 10000000000 .*at most 65536"),  # was: killed
    ("theory-spectrum-scale-nan", ["theory", "spectrum", "--init-scale", "nan"], r"--init-scale: 'nan' is not a comma list of finite numbers"),
    ("theory-spectrum-alpha-nan", ["theory", "spectrum", "--alpha", "nan"], r"--alpha: nan is not a finite number"),  # was: accepted
    ("theory-spectrum-seed", ["theory", "spectrum", "--seed", "-1", "--fan-in", "16", "--rank", "4"], r"--seed -1 must be in \[0, 4294967295\]"),  # was: traceback
    ("theory-spectrum-ranks-text", ["theory", "spectrum", "--rank", "4,x"], r"'4,x' is not a comma list of integers"),
    ("theory-spectrum-init", ["theory", "spectrum", "--init", "kaiming"], r"unknown init strategy 'kaiming'"),
    ("theory-spectrum-model", ["theory", "spectrum", "--model", "no-such-org/x", "--rank", "4"], r"model 'no-such-org/x'"),
    ("theory-fig3-alpha-nan", ["theory", "fig3", "--renyi-alpha", "nan", "--out", "{tmp}/f.json"], r"--renyi-alpha: nan is not a finite number"),  # was: accepted
    ("theory-fig3-scale-inf", ["theory", "fig3", "--scale-max", "inf", "--out", "{tmp}/f.json"], r"--scale-max: inf is not a finite number"),  # was: accepted
    ("theory-fig3-scales", ["theory", "fig3", "--scales", "1", "--out", "{tmp}/f.json"], r"--scales 1 must be"),
    ("theory-fig3-scales-huge", ["theory", "fig3", "--scales", "100000000", "--out", "{tmp}/f.json"], r"--scales 100000000 must be"),  # was: killed
    ("theory-fig3-rank-huge", ["theory", "fig3", "--rank", "1000000", "--out", "{tmp}/f.json"], r"rank 1000000 .*fan_in 1024"),  # was: killed
    ("theory-fig3-seed", ["theory", "fig3", "--seed", "-5", "--out", "{tmp}/f.json"], r"--seed -5 must be in"),  # was: traceback
    ("theory-ntk-n", ["theory", "ntk", "--data-dir", "{glue}", "--n", "1"], r"n 1 must be >= 2"),
    ("theory-ntk-n-above-data", ["theory", "ntk", "--data-dir", "{glue}", "--n", "100"], r"n 100 is larger than the 40 training examples"),
    ("theory-ntk-mb", ["theory", "ntk", "--data-dir", "{glue}", "--max-jacobian-mb", "0"], r"max_jacobian_mb 0 must be >= 1"),
    ("theory-ntk-eps-nan", ["theory", "ntk", "--data-dir", "{glue}", "--relative-eps", "nan"], r"relative_eps nan is not a finite number"),
    ("theory-compare-scale", ["theory", "compare", "--data-dir", "{glue}", "--init-scales", "nan", "--out-dir", "{tmp}/cmp"],
     r"--init-scales: 'nan' is not a comma list of finite numbers"),  # was: accepted (nan init scale after the FF run)
    ("theory-compare-rank", ["theory", "compare", "--data-dir", "{glue}", "--ranks", "0", "--out-dir", "{tmp}/cmp"],
     r"--ranks 0 must be"),  # was: accepted (rank 0 failed after the FF run)
    # ---- run (the main job) -----------------------------------------------------------------------
    ("run-fuse", ["run", "--fuse", "maybe", "--db", "{tmp}/main.sqlite"], r"--fuse 'maybe' must be on or off"),
    ("run-device", ["run", "--device", "tpu", "--db", "{tmp}/main.sqlite"], r"device 'tpu' is not one of"),
    ("run-data-dir", ["run", "--data-dir", "{tmp}/nowhere", "--db", "{tmp}/main.sqlite"], r"data dir '.*nowhere' is not a directory"),
    ("run-workers", ["run", "--workers", "0", "--db", "{tmp}/main.sqlite"], r"workers 0 must be >= 1"),
    # ---- sweep spec files ---------------------------------------------------------------------------
    ("spec-missing", ["sweep", "{tmp}/nope.yaml", *SWEEP[1:]], r"sweep spec '.*nope.yaml' does not exist"),
    ("spec-is-dir", ["sweep", "{tmp}", *SWEEP[1:]], r"sweep spec '.*' is not a file"),
    ("spec-not-utf8", ["sweep", "{spec_latin1}", *SWEEP[1:]], r"sweep spec '.*latin1.yaml' is not UTF-8 text"),  # was: traceback
    ("spec-alias-bomb", ["sweep", "{spec_bomb}", *SWEEP[1:]], r"sweep spec '.*bomb.yaml' uses a YAML alias"),  # was: killed
    ("spec-alias", ["sweep", "{spec_alias}", *SWEEP[1:]], r"sweep spec '.*alias.yaml' uses a YAML alias \(\*b, line 2\)"),  # was: accepted
    ("spec-million-runs", ["sweep", "{spec_million}", *SWEEP[1:]], r"1,000,000 points .*more than the 20,000"),  # was: killed
    ("spec-too-deep", ["sweep", "{spec_deep}", *SWEEP[1:]], r"sweep spec '.*deep.yaml' nests deeper than"),  # was: traceback
    ("spec-kind-list", ["sweep", "{spec_kind_list}", *SWEEP[1:]], r"unknown run kind \['train'\]"),  # was: traceback
    ("spec-kind-map", ["sweep", "{spec_kind_map}", *SWEEP[1:]], r"unknown run kind \{'a': 1\}"),  # was: traceback
    ("spec-lr-inf", ["sweep", "{spec_lr_inf}", *SWEEP[1:]], r"lr inf is not a finite number"),  # was: accepted
    ("spec-rate-nan", ["sweep", "{spec_rate_nan}", *SWEEP[1:]], r"rate nan is not a finite number"),
    ("spec-seed-huge", ["sweep", "{spec_seed_huge}", *SWEEP[1:]], r"seed 100000000000000000000000 must be an integer >= 0 and <= 4294967295"),  # was: accepted
    ("spec-rank-huge", ["sweep", "{spec_rank_huge}", *SWEEP[1:]], r"rank 1000000000 .*hidden size 384"),  # was: accepted
    ("spec-max-length", ["sweep", "{spec_max_length}", *SWEEP[1:]], r"max_length 100000 .*512 positions"),  # was: accepted
    ("spec-cpus-inf", ["sweep", "{spec_cpus_inf}", *SWEEP[1:]], r"'cpus' must be a finite number, got inf"),  # was: accepted
    ("spec-python-tag", ["sweep", "{spec_python_tag}", *SWEEP[1:]], r"is not valid YAML"),
    ("spec-unhashable-key", ["sweep", "{spec_unhashable}", *SWEEP[1:]], r"is not valid YAML"),
    ("spec-attack-option", ["sweep", "{spec_attack_bad_option}", *SWEEP[1:]], r"mt: option triggers must be a list"),
    ("spec-empty-trigger", ["sweep", "{spec_empty_trigger}", *SWEEP[1:]], r"trigger '' must be non-empty text"),  # was: accepted
]

# Cases the issue counts as mishandled before the fix and which a run of the old code would not
# survive in-process (the OS kills it), kept out of `--was` recounts.
KILLED_BEFORE = {"rank-huge", "spec-alias-bomb", "spec-million-runs", "theory-spectrum-rank-huge",
                 "theory-spectrum-fan-in-huge", "theory-fig3-scales-huge", "theory-fig3-rank-huge"}


def fails_with_one_line(capsys, argv: list[str], pattern: str) -> str:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, f"exit {code}: {err}"
    assert len(err.splitlines()) == 1, err
    assert err.startswith("ttrlab") and "Traceback" not in err, err
    assert re.search(pattern, err), err
    assert captured.out == "", captured.out
    return err


@pytest.mark.parametrize("argv,pattern", [pytest.param(a, p, id=i) for i, a, p in CASES])
def test_bad_input(capsys, env, argv, pattern):
    fails_with_one_line(capsys, [part.format(**env) for part in argv], pattern)


def test_table_size():
    """The figures of the closing note: how many bad inputs this table tries."""
    assert len(CASES) >= 150
    assert len({i for i, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("argv", [
    [*TRAIN, "--lr", "inf"],
    [*TRAIN, "--eval-size", "1000"],
    ["train", "--data-dir", "{latin1}"],
    [*TRAIN, "--attack", "mt", "--attack-option", "triggers=[unclosed"],
    [*TRAIN, "--max-length", "1000"],
])
def test_existing_result_survives(capsys, env, tmp_path, argv):
    out = tmp_path / "result.json"
    out.write_text('{"kept": true}\n')
    code = main([part.format(**env) for part in argv] + ["--out", str(out)])
    assert code == 2, capsys.readouterr().err
    assert json.loads(out.read_text()) == {"kept": True}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary file left


def test_bad_spec_writes_no_database(capsys, env, tmp_path):
    db = tmp_path / "s.sqlite"
    for name in ("spec_latin1", "spec_bomb", "spec_million", "spec_lr_inf"):
        assert main(["sweep", env[name], "--db", str(db)]) == 2
    assert not db.exists()


def test_valid_inputs_still_pass(capsys, env):
    """The edges of what is allowed stay allowed (the run gets as far as training)."""
    for argv in ([*TRAIN, "--rank", "384", "--max-length", "512", "--eval-size", "20"],
                 [*TRAIN, "--seed", str(2**32 - 1), "--attack", "bpa", "--rate", "0.1"],
                 [*TRAIN, "--curve-every", "5", "--curve-size", "20", "--weight-decay", "0"]):
        with pytest.raises(Reached):
            main([part.format(**env) for part in argv])
