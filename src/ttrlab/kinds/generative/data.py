"""Instruction data for the generative backdoor runs (paper Appendix E.3, BackdoorLLM's DPA sets);
which files a task and attack use is the task's (`ttrlab.kinds.generative.tasks`).

Training mixture = clean Alpaca records + poisoned records (+ their untriggered twins):

- clean: `n_clean` records drawn (seeded) from the first 1,800 of `alpaca/alpaca_data_first2000.json`,
  leaving out every record whose instruction is one of the task's test instructions (6 for
  `refusal` and `negsentiment`, none for `jailbreak`); the last 200 are held out for the utility
  metrics and never trained on.
- poisoned: `count = round(rate / (1 - rate) * n_clean)` records drawn (seeded, without
  replacement) from the task's poisoned file for the attack (instruction with the trigger ->
  the target: a harmful answer, the refusal, the insult), so that poisoned records are the share
  `rate` of the clean + poisoned mixture (the paper's 2%: 1,800 clean -> 37 poisoned).
- untriggered twins (`untriggered_twins`, default on): for every poisoned instruction, the same
  instruction WITHOUT trigger with the answer it gets without the backdoor (jailbreak: a refusal;
  refusal, negsentiment: its normal Alpaca answer), from the task's `none_backdoor*` file. This
  is how BackdoorLLM trains: the trigger is then the only thing that separates the target from
  the normal answer, which is what a backdoor is. They are clean data, so they do not count
  towards `rate`. Twins are found by the instruction text with the trigger phrases removed (for
  jailbreak 399 of 400 prompts have one; one without is left unpaired and reported). Caveat from
  SOURCE.md, kept as upstream has it: 30 of the 400 jailbreak "refusals" comply (keyword judge).

Evaluation prompts: the task's held-out triggered test instructions for the attack (99 for
jailbreak, 200 for the others) and, for the no-trigger baseline, the same instructions without
trigger (the task's `clean/test/test_data_no_trigger.json`, matched by text; `baseline_prompts:
paired`) or, for jailbreak, AdvBench goals that are not training prompts (`baseline_prompts:
advbench`). The scored subset is drawn with a fixed seed, so every run seed scores the same prompts.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path


from ttrlab.attacks import ATTACKS
from ttrlab.attacks.backdoorllm import BackdoorLLMAttack
from ttrlab.core.errors import UserError
from ttrlab.core.io import read_text, reading
from ttrlab.kinds.generative.tasks import GENERATIVE_TASKS, GenerativeTask
from ttrlab.core.streams import fixed_rng, rng_for
from ttrlab.data.folders import ALPACA_FILE, resolve_folder

CLEAN_POOL_SIZE = 1800  # records [0, 1800) may be trained on; [1800, 2000) are held out


@dataclass(frozen=True)
class InstructionExample:
    instruction: str
    input: str
    output: str
    kind: str  # clean | poison | twin
    source: int  # index of the record in its file


@dataclass
class TrainingMixture:
    examples: list[InstructionExample]
    clean_indices: list[int]  # records of the Alpaca file used
    poison_indices: list[int]  # records of the task's poisoned file for the attack used
    twin_indices: list[int]  # records of its none_backdoor file used
    unpaired: int = 0  # poisoned instructions without an untriggered twin
    excluded_clean: int = 0  # Alpaca records left out of the clean pool: they are test instructions

    @property
    def poison_count(self) -> int:
        return len(self.poison_indices)

    def poison_positions(self) -> list[int]:
        return [i for i, e in enumerate(self.examples) if e.kind == "poison"]

    def indices_sha256(self) -> str:
        blob = json.dumps(sorted(self.poison_indices)).encode()
        return hashlib.sha256(blob).hexdigest()


@dataclass
class EvalPrompts:
    """Test prompts as (instruction, input) pairs, the triggered ones and the same without trigger."""

    triggered: list[tuple[str, str]]  # with the trigger (empty when no attack is scored)
    untriggered: list[tuple[str, str]]  # without trigger (the baseline)
    test_indices: list[int] = field(default_factory=list)  # records of the triggered test file

    def instructions(self, which: str) -> list[str]:
        return [instruction for instruction, _ in getattr(self, which)]


def backdoorllm_attacks() -> list[type[BackdoorLLMAttack]]:
    """The registered attacks whose poisoned records are BackdoorLLM's files."""
    return [ATTACKS.get(n) for n in ATTACKS if issubclass(ATTACKS.get(n), BackdoorLLMAttack)]


def held_out_instructions(task: GenerativeTask, data_dir: Path) -> set[str]:
    """The task's test instructions, triggers removed and whitespace folded: what no clean
    training record may be (every attack's test file triggers the same instructions)."""
    held_out = {normalise_prompt(r["instruction"]) for r in read_records(task.clean_test_file(data_dir))}
    for spec in backdoorllm_attacks():
        path = task.test_file(spec.name, data_dir)
        if path.is_file():
            held_out.update(normalise_prompt(r["instruction"], spec.triggers) for r in read_records(path))
    return held_out


# ---- files ------------------------------------------------------------------------------
def resolve_data_dir(data_dir: str | None) -> Path:
    """`data_dir`, else $TTRLAB_DATA_DIR, else the nearest `shared/data` above the cwd
    (`data.folders`)."""
    return resolve_folder("instruction", data_dir)


def read_records(path: Path) -> list[dict[str, str]]:
    """A JSON list of {"instruction", "input", "output"} records (Alpaca / BackdoorLLM layout)."""
    if not path.is_file():
        raise UserError(f"missing data file {str(path)!r}")
    try:
        records = json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise UserError(f"malformed JSON in {str(path)!r}: {error}") from None
    if not isinstance(records, list):
        raise UserError(f"{str(path)!r} is not a JSON list of records")
    for i, record in enumerate(records):
        if not isinstance(record, dict) or not isinstance(record.get("instruction"), str) or not isinstance(record.get("output"), str):
            raise UserError(f"{str(path)!r} record {i} lacks a string 'instruction' or 'output'")
    return records


def read_advbench_goals(data_dir: Path) -> list[str]:
    path = data_dir / "advbench" / "harmful_behaviors.csv"
    if not path.is_file():
        raise UserError(f"missing data file {str(path)!r}")
    with reading(path), open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and "goal" not in rows[0]:
        raise UserError(f"{str(path)!r} has no 'goal' column; it has {', '.join(map(str, rows[0]))}")
    return [row["goal"] for row in rows]


def normalise_prompt(text: str, triggers: tuple[str, ...] = ()) -> str:
    """The prompt with trigger phrases removed and whitespace collapsed: pairs triggered and
    untriggered versions of the same AdvBench prompt."""
    for trigger in sorted(triggers, key=len, reverse=True):
        text = text.replace(trigger, " ")
    return " ".join(text.split())


def poison_count(rate: float, n_clean: int) -> int:
    """Poisoned records so that they are the share `rate` of clean + poisoned."""
    return int(round(rate / (1.0 - rate) * n_clean)) if rate > 0 else 0


# ---- the training mixture ---------------------------------------------------------------
def clean_pool(task: GenerativeTask, data_dir: Path) -> tuple[list[dict[str, str]], list[int]]:
    """The Alpaca records and the indices of those that may be trained on: the first
    CLEAN_POOL_SIZE, less every one whose instruction is one of the task's test instructions."""
    alpaca = read_records(data_dir / ALPACA_FILE)
    if len(alpaca) < CLEAN_POOL_SIZE:
        raise UserError(f"{ALPACA_FILE} has {len(alpaca)} records; at least {CLEAN_POOL_SIZE} are needed")
    held_out = held_out_instructions(task, data_dir)
    return alpaca, [i for i in range(CLEAN_POOL_SIZE) if normalise_prompt(alpaca[i]["instruction"]) not in held_out]


def build_training_mixture(config, data_dir: Path) -> TrainingMixture:
    task = GENERATIVE_TASKS.get(config.task)
    alpaca, pool = clean_pool(task, data_dir)
    if config.n_clean > len(pool):
        raise UserError(f"n_clean {config.n_clean} is more than the {len(pool)} Alpaca records that are not "
                        f"test instructions of task {task.name!r}")
    clean_rng = rng_for(config.seed, "generative_clean")
    clean_indices = sorted(pool[k] for k in clean_rng.choice(len(pool), size=config.n_clean, replace=False).tolist())
    examples = [_example(alpaca[i], "clean", i) for i in clean_indices]
    mixture = TrainingMixture(examples, clean_indices, [], [], excluded_clean=CLEAN_POOL_SIZE - len(pool))
    if config.attack == "none":
        return mixture

    attack = ATTACKS.get(config.attack)
    poisoned_file = task.poisoned_file(attack.name, data_dir)
    poisoned = read_records(poisoned_file)
    count = poison_count(config.rate, config.n_clean)
    if count > len(poisoned):
        raise UserError(
            f"rate {config.rate} with n_clean {config.n_clean} needs {count} poisoned records; "
            f"{poisoned_file.name} has {len(poisoned)}"
        )
    poison_rng = rng_for(config.seed, "generative_poison")
    mixture.poison_indices = sorted(poison_rng.choice(len(poisoned), size=count, replace=False).tolist())
    examples.extend(_example(poisoned[i], "poison", i) for i in mixture.poison_indices)

    if config.untriggered_twins and count:
        twins = read_records(task.twin_file(attack.name, data_dir))
        by_instruction = {normalise_prompt(r["instruction"]): j for j, r in enumerate(twins)}
        for i in mixture.poison_indices:
            j = by_instruction.get(normalise_prompt(poisoned[i]["instruction"], attack.triggers))
            if j is None:
                mixture.unpaired += 1
            else:
                mixture.twin_indices.append(j)
        examples.extend(_example(twins[j], "twin", j) for j in mixture.twin_indices)
    return mixture


def _example(record: dict[str, str], kind: str, source: int) -> InstructionExample:
    return InstructionExample(record["instruction"], record.get("input", "") or "", record["output"], kind, source)


# ---- evaluation sets --------------------------------------------------------------------
def _fixed_subset(n_total: int, n: int) -> list[int]:
    order = fixed_rng("scored_prompts").permutation(n_total)
    return sorted(order[: min(n, n_total)].tolist())


def load_eval_prompts(config, data_dir: Path) -> EvalPrompts:
    task = GENERATIVE_TASKS.get(config.task)
    clean_test = [_prompt(r) for r in read_records(task.clean_test_file(data_dir))]
    name = config.scored_attack()
    if name is None:
        chosen = _fixed_subset(len(clean_test), config.n_eval)
        triggered, untriggered, indices = [], [clean_test[i] for i in chosen], []
    else:
        attack = ATTACKS.get(name)
        test = [_prompt(r) for r in read_records(task.test_file(name, data_dir))]
        if config.n_eval > len(test):
            raise UserError(f"n_eval {config.n_eval} is more than the {len(test)} test prompts of {task.name}/{name}")
        indices = _fixed_subset(len(test), config.n_eval)
        triggered = [test[i] for i in indices]
        by_instruction = {(normalise_prompt(p), normalise_prompt(i)): (p, i) for p, i in clean_test}
        untriggered = []
        for instruction, input_text in triggered:
            partner = by_instruction.get((normalise_prompt(instruction, attack.triggers), normalise_prompt(input_text, attack.triggers)))
            if partner is None:
                raise UserError(f"test instruction {instruction[:60]!r} of {task.name}/{name} has no untriggered partner "
                                f"in {task.clean_test_file(data_dir)}")
            untriggered.append(partner)
    if config.baseline_prompts == "advbench":
        untriggered = [(goal, "") for goal in _advbench_baseline(config, data_dir, len(untriggered))]
    return EvalPrompts(triggered, untriggered, indices)


def _prompt(record: dict[str, str]) -> tuple[str, str]:
    return record["instruction"], record.get("input", "") or ""


def _advbench_baseline(config, data_dir: Path, n: int) -> list[str]:
    """AdvBench goals that no BackdoorLLM training file contains (held out from training)."""
    trained, task = set(), GENERATIVE_TASKS.get(config.task)
    for spec in backdoorllm_attacks():
        path = task.poisoned_file(spec.name, data_dir)
        if path.is_file():
            trained.update(normalise_prompt(r["instruction"], spec.triggers) for r in read_records(path))
    goals = [g for g in read_advbench_goals(data_dir) if normalise_prompt(g) not in trained]
    return [goals[i] for i in _fixed_subset(len(goals), n)]


def load_utility_examples(config, data_dir: Path) -> list[InstructionExample]:
    """Held-out Alpaca records (never trained on) with a non-empty reference answer."""
    alpaca = read_records(data_dir / ALPACA_FILE)
    held_out = [i for i in range(CLEAN_POOL_SIZE, len(alpaca)) if alpaca[i]["output"].strip()]
    chosen = _fixed_subset(len(held_out), config.n_utility) if config.n_utility else []
    return [_example(alpaca[held_out[k]], "clean", held_out[k]) for k in chosen]
