"""The paper's threat model and ttrlab's default: the attacker poisons part of the fine-tuning
data itself; the victim fine-tunes the clean pretrained model on it with the method under test."""
from __future__ import annotations

from ttrlab.threats.base import DEFAULT_THREAT, THREATS, Threat


@THREATS.register(DEFAULT_THREAT)
class FineTunePoison(Threat):
    name = DEFAULT_THREAT
    summary = "the fine-tuning data is poisoned (the paper's setting)"
    measures = ("how far poisoned training examples move the fine-tuned model: ASR / clean accuracy after "
                "fine-tuning the clean base on the poisoned split")
    stages = "one: fine-tune the pretrained model with the method on the poisoned training split"
    sources = "the paper (ICML 2025); Gu et al. ACL'23 (backdoor forgetting)"

    @classmethod
    def experiment(cls):
        from ttrlab.kinds.classification.experiment import CLASSIFICATION

        return CLASSIFICATION
