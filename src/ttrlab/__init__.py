"""ttrlab: measure and explain how a fine-tuning method (full fine-tuning vs LoRA) changes a
language model's training-time robustness to poisoned and backdoored training data.

Public API: what a user may import from here (loaded on first use, so `import ttrlab` stays
cheap). The machinery lives in the subpackages.

    from ttrlab import RunConfig, run_experiment
    result = run_experiment(RunConfig(task="rte", method="lora", rank=16, attack="upa", rate=0.2))
"""
__version__ = "0.1.0"

_PUBLIC = {
    "RunConfig": "ttrlab.kinds.classification.config",
    "paper_learning_rate": "ttrlab.kinds.classification.config",
    "UserError": "ttrlab.core.errors",
    "run_experiment": "ttrlab.kinds.classification.experiment",
    "run": "ttrlab.kinds.pipeline",
    "RunResult": "ttrlab.core.result",
    "Runtime": "ttrlab.models.runtime",
}


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'ttrlab' has no attribute {name!r}")


__all__ = [*_PUBLIC, "__version__"]
