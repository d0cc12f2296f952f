"""The random streams of a run, by name. Every random choice a run makes draws from one of these
streams, each derived from the run's seed alone, so a run is a pure function of its config and
adding or changing one draw never shifts another.

| stream           | draws                                                   | numpy seed      |
|------------------|---------------------------------------------------------|-----------------|
| train_subset     | which training examples a `train_size` subset keeps     | seed (*)        |
| batch_order      | the order of batches in every epoch                     | seed (*)        |
| attack           | which training examples an attack changes, and how      | [seed, 1]       |
| trigger_test     | where a trigger goes in the test examples               | [seed, 2]       |
| extra_test       | further test sets (MT's trigger subsets)                | [seed, 3]       |
| theory_sample    | the N examples of a theory run                          | [seed, 11]      |
| theory_pairs     | their poisoned twins (the attack at rate 1)             | [seed, 12]      |
| theory_fisher    | the Fisher sample poisoned at the run's rate            | [seed, 13]      |
| generative_clean | the clean Alpaca records of a generative mixture        | [seed, 11]      |
| generative_poison| its poisoned BackdoorLLM records                        | [seed, 12]      |
| defense_holdout  | a defense's held-out clean training examples            | [seed, 21]      |
| defense          | a defense's own draws (STRIP's perturbations, 2-means)  | [seed, 22]      |
| clean_subset     | poisoned_base: stage 2's clean subset of the rows stage 1 did not use | [seed, 31] |

Torch draws: the classification head from `seed + 104729` (`models.HEAD_SEED_OFFSET`), LoRA's A
from `seed + 7919` (`methods.lora.LORA_INIT_SEED_OFFSET`), dropout from `torch.manual_seed(seed)`.
Seed-independent by design (`FIXED_STREAMS`): the dev subset and the scored generative prompts,
so every seed of a comparison is scored on the same examples; and the data of the generative
safety-alignment stage (`generative.alignment`), so every run starts from the same aligned model.

(*) `train_subset` and `batch_order` are separate generators (drawing from one never moves the
other) but both start from the bare seed: giving either its own entropy would change the subset
or the batch order of every run, and with them every stored result. They keep the bare seed until
a result-schema change re-baselines the stored runs.
"""
from __future__ import annotations

import numpy as np

STREAMS: dict[str, int | None] = {
    "train_subset": None,
    "batch_order": None,
    "attack": 1,
    "trigger_test": 2,
    "extra_test": 3,
    "theory_sample": 11,
    "theory_pairs": 12,
    "theory_fisher": 13,
    "generative_clean": 11,
    "generative_poison": 12,
    "defense_holdout": 21,
    "defense": 22,
    "clean_subset": 31,
}


# Streams that do not depend on the run's seed: every seed of a comparison is scored on the same
# examples. 20240723 is the seed of the paper's own GLUE loader.
FIXED_STREAMS: dict[str, int] = {"eval_subset": 20240723, "scored_prompts": 20240723,
                                 "alignment_refusals": 1, "alignment_clean": 2}


def fixed_rng(stream: str) -> np.random.Generator:
    return np.random.default_rng(FIXED_STREAMS[stream])


def rng_for(seed: int, stream: str) -> np.random.Generator:
    """A fresh generator for the named stream of a run with this seed."""
    entropy = STREAMS[stream]
    return np.random.default_rng(seed if entropy is None else [seed, entropy])
