"""The classification run kind ("train"): fine-tune a sequence classifier on a GLUE-style task
whose training split an attack poisoned, then score the clean and the triggered dev set.

    RunConfig → task split (GLUE or a task file; seeded subsets) → attack.poison → classifier → method.prepare
              → optimize (optional learning curve) → clean metrics, triggered metrics and ASR (backdoors), extra test sets
              → the defense, if any (`ttrlab.defenses`: filter and retrain, screen the inputs, or fine-tune on clean data)

The steps plug into the one pipeline (`ttrlab.kinds.pipeline.run`); `run_experiment(config)` is the
public call and returns the result document (`ttrlab.core.result`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ttrlab.kinds.classification.config import RunConfig
from ttrlab.training.curves import Checkpoints
from ttrlab.data import Example, TaskSpec, get_task, load_split, seeded_subset
from ttrlab.kinds.pipeline import Evaluation, Experiment, run_document
from ttrlab.core.settings import require
from ttrlab.core.streams import fixed_rng, rng_for


@dataclass
class ClassificationDataset:
    task: TaskSpec
    train: list[Example]  # the run's training subset (seeded)
    dev: list[Example]  # the dev subset (the same for every seed)


@dataclass
class PoisonedClassification:
    split: Any  # attacks.PoisonedSplit of the training subset
    triggered_dev: list[Example] | None  # the dev set with the trigger (backdoors)
    extra_test_sets: dict[str, list[Example]]


def load_run_data(config: RunConfig) -> ClassificationDataset:
    """The task spec (a GLUE name or a task file), training subset and dev subset the config names."""
    task = get_task(config.task)
    train = load_split(task, "train", config.data_dir, config.data_source)
    dev = load_split(task, "dev", config.data_dir, config.data_source)
    # train_size is a cap (the paper's loader caps every task at 17,500; the result records the
    # count used), but the scored set is what every seed is compared on: asking for more dev
    # examples than there are would be recorded as asked and scored on fewer
    require(config.eval_size is None or config.eval_size <= len(dev),
            f"eval_size {config.eval_size} is larger than the {len(dev)} examples of {task.name} dev; "
            f"allowed: 1 to {len(dev)} (or unset: all)")
    scored = len(dev) if config.eval_size is None else config.eval_size
    if getattr(config, "curve_every", 0):  # the curve scores the first curve_size of them
        require(config.curve_size <= scored,
                f"curve_size {config.curve_size} is larger than the {scored} scored dev examples; allowed: 1 to {scored}")
    return ClassificationDataset(task, seeded_subset(train, config.train_size, rng_for(config.seed, "train_subset")),
                                 seeded_subset(dev, config.eval_size, fixed_rng("eval_subset")))


class ClassificationExperiment(Experiment):
    name = "train"
    config_type = RunConfig

    # What the runs of a fused group must share (the base model and everything a step's shape
    # depends on); they may differ in seed, attack, rate, data size, learning rate, schedule and
    # the method's own settings (rank, alpha, targets, init).
    FUSION_SHARED = ("model", "task", "data_dir", "data_source", "max_length", "batch_size", "max_steps",
                     "device", "precision")

    def fusion_key(self, config):
        from ttrlab.defenses import DEFENSES
        from ttrlab.methods import METHODS
        from ttrlab.models.runtime import Runtime
        from ttrlab.threats import threat_of

        if DEFENSES.get(config.defense).changes_run:  # a defense retrains or screens after training: alone
            return None
        if not threat_of(config).trains_fused:  # threats: e.g. poisoned_base loads its own stage-1 weights
            return None
        if (not METHODS.get(config.method).trains_fused or not Runtime.fusing_pays_on(config.device)
                or config.curve_every):  # a fused group records no learning curve
            return None
        values = config.to_dict()
        return "|".join(f"{name}={values.get(name)!r}" for name in self.FUSION_SHARED)

    def run(self, config, progress=None):
        # threats: the threat model names the experiment that trains the config (the default: this one)
        return run_document(experiment_for(config), config, progress=progress)

    def run_group(self, configs, progress=None):
        from ttrlab.kinds.fused import run_group

        return run_group(self, configs, progress=progress)

    def load_data(self, config):
        return load_run_data(config)

    def poison(self, config, data):
        from ttrlab.attacks import build_attack

        attack = build_attack(config)
        return PoisonedClassification(
            split=attack.poison(data.train, rng_for(config.seed, "attack")),
            triggered_dev=attack.trigger_examples(data.dev, rng_for(config.seed, "trigger_test")),
            extra_test_sets=attack.extra_test_sets(data.dev, rng_for(config.seed, "extra_test")),
        )

    def load_model(self, state):
        from ttrlab.models.loading import load_classifier

        return load_classifier(state.config.model, state.data.task.num_labels, state.config.seed)

    def training_set(self, state, examples=None):
        from ttrlab.training.loop import classification_training_set

        examples = state.poisoned.split.examples if examples is None else examples
        return classification_training_set(state.tokenizer, list(examples), state.config.max_length)

    def classes(self, state):
        return state.data.task.num_labels

    def evaluate(self, state):
        """The trained model's metrics; with a defense (`ttrlab.defenses`), the defended system's,
        plus the undefended ones under metrics["defense"] and a "defense" section."""
        import time

        from ttrlab.defenses import build_defense

        config = state.config
        metrics = self.score(state, state.model)
        defense = build_defense(config)
        if not defense.changes_run:
            return Evaluation(metrics)
        from ttrlab.attacks import build_attack
        from ttrlab.defenses.victim import Victim

        started = time.perf_counter()
        victim = Victim(self, state, metrics, build_attack(config).settings.target_label)
        outcome = defense.defend(victim)
        defended = {**outcome.metrics, "defense": {"asr_before": metrics["asr"],
                                                   "clean_accuracy_before": metrics["clean"]["accuracy"],
                                                   **outcome.detection}}
        resolved = config.resolved()
        settings = {name: resolved[name] for name in ("defense", *defense.uses)}
        section = {"name": defense.name, "kind": defense.kind, "settings": settings, "counts": outcome.counts,
                   "before": metrics, **outcome.details, "seconds": round(time.perf_counter() - started, 3)}
        return Evaluation(defended, {"defense": section})

    def score(self, state, model) -> dict[str, Any]:
        """`model`'s clean metrics on the run's test sets and, under a backdoor, triggered metrics
        and ASR (and the attack's extra test sets)."""
        from ttrlab.attacks import target_label_of
        from ttrlab.evaluation import attack_success_rate
        from ttrlab.evaluation import classification_metrics as scored
        from ttrlab.training.loop import predict

        config, data, poisoned = state.config, state.data, state.poisoned

        def predictions(examples):
            return predict(model, state.tokenizer, examples, config.max_length, config.eval_batch_size, state.runtime)

        def classification_metrics(labels, predicted, positive):
            return scored(labels, predicted, positive, data.task.num_labels)

        positive, target = data.task.positive_label, target_label_of(config)
        dev_labels = [e.label for e in data.dev]
        metrics: dict[str, Any] = {
            "clean": classification_metrics(dev_labels, predictions(data.dev), positive),
            "triggered": None,
            "asr": None,
        }
        if poisoned.triggered_dev is not None:
            triggered = predictions(poisoned.triggered_dev)
            metrics["triggered"] = classification_metrics(dev_labels, triggered, positive)
            metrics["asr"] = attack_success_rate(dev_labels, triggered, target)
        if poisoned.extra_test_sets:  # e.g. MT's trigger subsets: accuracy, and how often a non-target input turns target
            metrics["extra"] = {}
            for name, examples in poisoned.extra_test_sets.items():
                labels, predicted = [e.label for e in examples], predictions(examples)
                metrics["extra"][name] = {**classification_metrics(labels, predicted, positive),
                                          "target_rate": attack_success_rate(labels, predicted, target)}
        return metrics

    def checkpoints(self, state):
        if not state.config.curve_every:
            return None
        return ClassificationCheckpoints(state)

    def data_summary(self, state):
        data, poisoned = state.data, state.poisoned
        summary = {"train_examples": len(data.train), "eval_examples": len(data.dev)}
        if data.task.is_file_task:  # the files' digests and the per-label counts (GLUE documents keep their shape)
            from collections import Counter

            names = data.task.label_names
            for key, examples in (("train_label_counts", poisoned.split.examples), ("eval_label_counts", data.dev)):
                counts = Counter(e.label for e in examples)
                summary[key] = {names[i]: counts.get(i, 0) for i in range(len(names))}
            summary.update(data.task.provenance())
        return summary

    def poison_summary(self, state):
        config, split = state.config, state.poisoned.split
        return {"attack": config.attack, "rate": config.rate, "count": split.count,
                "indices_sha256": split.indices_sha256()}


class ClassificationCheckpoints(Checkpoints):
    """The classification learning curve: clean accuracy on the first `curve_size` dev examples
    and, under a backdoor, the ASR on their triggered versions, at every checkpoint."""

    def __init__(self, state):
        config, poisoned = state.config, state.poisoned
        super().__init__(config, set(poisoned.split.changed))
        self.config, self.tokenizer, self.runtime = config, state.tokenizer, state.runtime
        self.dev = state.data.dev[: config.curve_size]
        self.triggered = poisoned.triggered_dev[: config.curve_size] if poisoned.triggered_dev is not None else None

    def evaluate(self, model):
        from ttrlab.attacks import target_label_of
        from ttrlab.evaluation import attack_success_rate
        from ttrlab.training.loop import predict

        c = self.config
        labels = [e.label for e in self.dev]
        clean = predict(model, self.tokenizer, self.dev, c.max_length, c.eval_batch_size, self.runtime)
        point = {"clean.accuracy": float((clean == labels).mean())}
        if self.triggered is not None:
            triggered = predict(model, self.tokenizer, self.triggered, c.max_length, c.eval_batch_size, self.runtime)
            point["asr"] = attack_success_rate(labels, triggered, target_label_of(c))
        return point


CLASSIFICATION = ClassificationExperiment()


def run_experiment(config: RunConfig, progress=None, batch_hook=None, keep_model: bool = False,
                   data: ClassificationDataset | None = None) -> dict[str, Any]:
    """Run one classification run and return its result document (see `run_document`)."""
    return run_document(experiment_for(config), config, progress=progress, batch_hook=batch_hook, keep_model=keep_model, data=data)


def experiment_for(config: RunConfig) -> ClassificationExperiment:
    """The experiment that trains `config`: its threat model's (`ttrlab.threats`; the default
    threat, fine_tune_poison, is CLASSIFICATION)."""
    from ttrlab.threats import threat_of

    return threat_of(config).experiment()
