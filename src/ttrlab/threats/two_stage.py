"""The run of a `poisoned_base` threat: the classification experiment with stage 1 in front.

Only four steps differ from a `fine_tune_poison` run (`kinds.classification.experiment`):

- data: the dev subset is the usual one; the training subset is `train_size` examples drawn (by
  the seed's `clean_subset` stream) from the training rows stage 1 did *not* use: the victim's
  own data, never the attacker's;
- poison: stage 2's training split is those clean examples unchanged (no position poisoned);
  the triggered dev set is the attack's, drawn as stage 1 draws it (so stage 1's and stage 2's
  ASR are on the same inputs);
- model: the pretrained classifier with stage 1's stored weights (`threats.base_model`);
- evaluate: the usual metrics after stage 2, plus stage 1's under `metrics.threat` and its record
  in a top-level "threat" section.

The poison section counts stage 1's poisoned examples (the dose that entered the base).
"""
from __future__ import annotations

from dataclasses import dataclass

from ttrlab.core.settings import require
from ttrlab.core.streams import rng_for
from ttrlab.kinds.classification.experiment import (ClassificationDataset, ClassificationExperiment,
                                                    PoisonedClassification, load_run_data)
from ttrlab.kinds.pipeline import Evaluation
from ttrlab.threats.base_model import load_weights, stage_one_config, stored_base


@dataclass
class TwoStageData(ClassificationDataset):
    base_rows: frozenset[int] = frozenset()  # the training rows stage 1 used (never in stage 2)


class PoisonedBaseExperiment(ClassificationExperiment):
    def fusion_key(self, config):
        return None

    def load_data(self, config):
        from ttrlab.data import load_split, seeded_subset

        own = load_run_data(config)  # the task, the dev subset and the run's own checks
        base_rows = frozenset(e.row for e in load_run_data(stage_one_config(config)).train)
        full = load_split(own.task, "train", config.data_dir, config.data_source)
        rest = [e for e in full if e.row not in base_rows]
        require(rest, f"base_size {config.base_size} leaves no training examples for stage 2 ({own.task.name} train "
                      f"has {len(full)}); allowed: base_size below {len(full)}")
        train = seeded_subset(rest, config.train_size, rng_for(config.seed, "clean_subset"))
        return TwoStageData(own.task, train, own.dev, base_rows)

    def poison(self, config, data):
        from ttrlab.attacks import PoisonedSplit, build_attack

        attack = build_attack(config)
        return PoisonedClassification(
            split=PoisonedSplit(tuple(data.train), ()),  # stage 2 trains on clean examples only
            triggered_dev=attack.trigger_examples(data.dev, rng_for(config.seed, "trigger_test")),
            extra_test_sets=attack.extra_test_sets(data.dev, rng_for(config.seed, "extra_test")),
        )

    def load_model(self, state):
        tokenizer, model = super().load_model(state)
        return tokenizer, load_weights(model, self.base(state))

    def evaluate(self, state):
        evaluation = super().evaluate(state)
        record = self.base(state).record
        before = record["metrics"]
        metrics = {**evaluation.metrics,
                   "threat": {"base_asr": before["asr"], "base_clean_accuracy": before["clean"]["accuracy"]}}
        section = {"name": "poisoned_base", "stage1": {k: record[k] for k in ("key", "run_key", "metrics", "poison",
                                                                              "train", "data")}}
        return Evaluation(metrics, {**evaluation.sections, "threat": section})

    def data_summary(self, state):
        return {**super().data_summary(state), "base_examples": len(state.data.base_rows)}

    def poison_summary(self, state):
        stage1 = self.base(state).record["poison"]
        return {"attack": state.config.attack, "rate": state.config.rate, "count": stage1["count"],
                "indices_sha256": stage1["indices_sha256"], "threat": "poisoned_base",
                "stage2_count": state.poisoned.split.count}

    @staticmethod
    def base(state):
        """Stage 1 on the run's own device and precision (resolved once, in the state)."""
        return stored_base(state.config, state.runtime)


POISONED_BASE = PoisonedBaseExperiment()
