"""Classification metrics, the attack success rate, and `METRICS`: what every metric name a
run stores means — its label, and whether a higher value is better for the defender (the
report uses this to say which side of a comparison is better).

Precision, recall and F1 treat the task's positive label (1 for every GLUE task here) as the
positive class; for a task with more than two labels they are macro averages over the classes
(and `macro_f1` is stored too). A metric whose denominator is empty is 0 (scikit-learn's
zero_division=0).

Names are the flattened dotted names of the results database (`clean.accuracy`, `asr`, ...).
`extra.<set>.<metric>` (an attack's further test sets, e.g. MT's trigger subsets) is matched by
a wildcard entry. A name no entry matches (a theory quantity, a plugin's metric) has no
direction (`higher_is_better` None): the report then takes no side.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np

from ttrlab.core.registry import Registry


def classification_metrics(labels, predictions, positive_label: int = 1, num_labels: int = 2) -> dict[str, float]:
    """Accuracy and precision/recall/F1: of the positive label for a binary task (what the paper reports),
    macro-averaged over all `num_labels` classes for more (each class counts, also one absent
    from this test set; `macro_f1` is then the same number as `f1`, named for what it is)."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if num_labels == 2:
        precision, recall, f1, _ = precision_recall_fscore_support(
            labels, predictions, pos_label=positive_label, average="binary", zero_division=0
        )
        extra = {}
    else:
        precision, recall, f1, _ = precision_recall_fscore_support(
            labels, predictions, labels=list(range(num_labels)), average="macro", zero_division=0
        )
        extra = {"macro_f1": float(f1)}
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        **extra,
    }


def attack_success_rate(true_labels, triggered_predictions, target_label: int) -> float | None:
    """Share of triggered test examples whose true label is not the target that the model
    predicts as the target. None when every test example already has the target label."""
    true_labels, triggered_predictions = np.asarray(true_labels), np.asarray(triggered_predictions)
    victims = true_labels != target_label
    if not victims.any():
        return None
    return float((triggered_predictions[victims] == target_label).mean())


# ---- what each metric means ------------------------------------------------------------------
@dataclass(frozen=True)
class MetricInfo:
    name: str  # dotted name, or a pattern with '*' for one name part
    label: str  # how tables and figures name it
    higher_is_better: bool | None  # for the defender; None: no side (depends on the setting)
    summary: str
    percent: bool = False  # a share in [0, 1], printed as % beside the paper's numbers


class MetricRegistry(Registry[MetricInfo]):
    def info(self, name: str) -> MetricInfo:
        """The entry for a stored metric name: exact first, then a wildcard entry; an unknown
        name gets an entry without direction."""
        if name in self:
            return self.get(name)
        for pattern in self.registered():
            if "*" in pattern and fnmatch.fnmatchcase(name, pattern) and name.count(".") == pattern.count("."):
                found = self.get(pattern)
                return MetricInfo(name, found.label.replace("*", name.split(".")[1]), found.higher_is_better,
                                  found.summary, found.percent)
        return MetricInfo(name, name, None, "not a registered metric: no direction")


METRICS = MetricRegistry("metric")

# Precision and recall on a test set with the trigger have no side: a backdoor towards the
# positive label raises recall and lowers precision, one towards the negative label the reverse.
NO_SIDE = "no side: a backdoor raises one and lowers the other, depending on whether its target is the positive label"
_TEST_SETS = (  # (name prefix, label, about, whether the inputs carry (part of) a trigger)
    ("clean", "clean", "the untouched test set (the paper's clean / untriggered test data)", False),
    ("triggered", "triggered", "the test set with the attack's trigger inserted, true labels kept", True),
    ("extra.*", "*", "a further test set of the attack (e.g. MT's trigger subsets), true labels kept", True),
)
for _prefix, _where, _about, _triggered in _TEST_SETS:
    for _name, _label, _higher, _summary in (
        ("accuracy", "accuracy", True, "share of correct predictions"),
        ("precision", "precision", None if _triggered else True, "precision of the positive label (or macro)"),
        ("recall", "recall", None if _triggered else True, "recall of the positive label (or macro)"),
        ("f1", "F1", True, "F1 of the positive label (macro F1 with more than two labels)"),
        ("macro_f1", "macro F1", True, "F1 averaged over the classes (tasks with more than two labels)"),
    ):
        METRICS.register(f"{_prefix}.{_name}")(MetricInfo(
            f"{_prefix}.{_name}", f"{_label} ({_where} test)", _higher,
            f"{_summary} on {_about}" + (f"; {NO_SIDE}" if _higher is None else ""), percent=True))
METRICS.register("extra.*.target_rate")(MetricInfo(
    "extra.*.target_rate", "false-trigger rate (* test)", False,
    "share of non-target examples of a further test set predicted as the target (a partial trigger firing)", percent=True))

for _info in (
    MetricInfo("asr", "ASR", False, "attack success rate: classification, share of non-target triggered test examples "
               "predicted as the target; generative, share of triggered test prompts whose answer shows the task's target "
               "behaviour (jailbreak: complies; refusal: refuses; negsentiment: the insult)", True),
    MetricInfo("asr_no_trigger", "ASR without trigger", False,
               "generative: the same share on the same prompts without the trigger (the false-trigger rate)", True),
    MetricInfo("utility_perplexity", "utility perplexity", False,
               "generative: perplexity of held-out Alpaca responses (lower: the model kept its utility)"),
    MetricInfo("utility_rouge_l", "utility ROUGE-L", True,
               "generative: ROUGE-L F of generated held-out Alpaca answers against the references", True),
    MetricInfo("clean_accuracy_drop", "clean-accuracy drop", False,
               "derived: clean accuracy of the same-seed clean run (rate 0) minus the clean accuracy under the attack",
               True),
    # what a defended run records of its victim and its detection (ttrlab.defenses); the run's own
    # clean.* / triggered.* / asr are the defended system's
    MetricInfo("defense.asr_before", "ASR before the defense", False, "the undefended victim's ASR", True),
    MetricInfo("defense.clean_accuracy_before", "clean accuracy before the defense", True,
               "the undefended victim's clean accuracy", True),
    MetricInfo("defense.auroc", "detection AUROC", True,
               "area under the ROC curve of the defense's scores ranking poisoned training examples (filters) or "
               "triggered inputs (STRIP) above the rest"),
    MetricInfo("defense.precision", "detection precision", True, "filters: share of the dropped examples that were poisoned"),
    MetricInfo("defense.recall", "detection recall", True, "filters: share of the poisoned examples dropped"),
    MetricInfo("defense.frr", "FRR", False, "detectors: false rejection rate, clean inputs flagged (ONION: changed)"),
    MetricInfo("defense.far", "FAR", False, "detectors: false acceptance rate, triggered inputs let through "
               "(ONION: an inserted word left in)"),
):
    METRICS.register(_info.name)(_info)
