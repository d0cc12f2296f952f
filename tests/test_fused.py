"""Fused multi-adapter training (`ttrlab.kinds.fused`): K LoRA runs trained as one group over one
frozen base give each run the result it gets alone (BERT's dropout on: each run draws its own
masks), whatever group it trained in; only runs that can share a base fuse."""
import pytest

from ttrlab import RunConfig
from ttrlab.kinds.classification.experiment import CLASSIFICATION
from ttrlab.kinds.fused import run_group
from ttrlab.models.runtime import FUSING_PAYS

pytestmark = pytest.mark.slow
TINY = dict(task="sst2", model="minilm", method="lora", train_size=96, eval_size=48, max_steps=6, batch_size=8,
            lr_preset="cpu")


def _configs(glue_dir, *variants):
    return [RunConfig(**{**TINY, **variant}, data_dir=str(glue_dir)) for variant in variants]


def _same_run(fused, alone):
    assert fused["run_key"] == alone["run_key"]
    assert fused["metrics"] == alone["metrics"]  # identical predictions on every test set
    assert fused["train"]["final_loss"] == pytest.approx(alone["train"]["final_loss"], rel=1e-5)
    assert fused["method"] == alone["method"]  # init record, trainable and total parameters
    assert fused["poison"] == alone["poison"] and fused["config"] == alone["config"]
    assert fused["train"]["real_tokens"] == alone["train"]["real_tokens"]


def test_a_fused_group_gives_every_run_its_result_alone(glue_dir):
    configs = _configs(glue_dir, dict(seed=0, attack="bpa", rate=0.1), dict(seed=1, attack="upa", rate=0.3, rank=4),
                       dict(seed=2, attack="bpa", rate=0.0, alpha=8, init="gaussian"))
    fused = run_group(CLASSIFICATION, configs)
    for config, document in zip(configs, fused):
        _same_run(document, CLASSIFICATION.run(config))
        assert document["train"]["fused_group"]["members"] == [c.run_key() for c in configs]
        assert document["train"]["fused_group"]["size"] == 3


def test_a_run_does_not_depend_on_its_group(glue_dir):
    """The same clean run beside heavily poisoned runs, in two different groups: the same
    result, so neither the others' poisoned rows nor their dropout draws reach it."""
    x, a, b, c = _configs(glue_dir, dict(seed=5, attack="bpa", rate=0.0), dict(seed=6, attack="upa", rate=0.5),
                          dict(seed=7, attack="bpa", rate=0.5), dict(seed=8, attack="upa", rate=0.5, rank=16))
    first = run_group(CLASSIFICATION, [x, a])[0]
    second = run_group(CLASSIFICATION, [b, x, c])[1]
    _same_run(first, second)


def test_each_run_gets_its_own_batches_and_losses_step_by_step(glue_dir, monkeypatch):
    """Every step, each run of the group consumes exactly the batch it consumes alone (its own
    poisoned examples, in its own order), and its loss is within 1e-5 of its loss alone."""
    import torch

    import ttrlab.kinds.fused.group as group
    from ttrlab.kinds.fused.routing import PackedStep
    from ttrlab.kinds.pipeline import run

    configs = _configs(glue_dir, dict(seed=3, attack="bpa", rate=0.2), dict(seed=4, attack="upa", rate=0.2))
    alone, alone_batches = [], []
    for config in configs:
        losses, batches = [], []
        run(CLASSIFICATION, config, progress=lambda event, **info: losses.append(info["loss"]) if event == "step" else None,
            batch_hook=lambda positions, batch: batches.append(batch))
        alone.append(losses)
        alone_batches.append(batches)
    packed_batches = []
    pack = PackedStep.pack

    def recording_pack(self, batches):
        packed_batches.append(batches)
        return pack(self, batches)

    monkeypatch.setattr(PackedStep, "pack", recording_pack)
    seen = []
    cross_entropy = torch.nn.functional.cross_entropy

    def recording(*args, **kwargs):
        loss = cross_entropy(*args, **kwargs)
        seen.append(loss.item())
        return loss

    monkeypatch.setattr(group.torch.nn.functional, "cross_entropy", recording)
    run_group(CLASSIFICATION, configs)
    fused = [seen[k::len(configs)] for k in range(len(configs))]
    for k in range(len(configs)):
        assert fused[k] == pytest.approx(alone[k], rel=1e-5)
        assert len(packed_batches) == len(alone_batches[k]) == TINY["max_steps"]
        for step_batches, own in zip(packed_batches, alone_batches[k]):
            for key in ("input_ids", "attention_mask", "labels"):
                assert torch.equal(step_batches[k][key], own[key])


def test_which_runs_fuse(monkeypatch):
    base = RunConfig(task="sst2", method="lora", device="cpu")
    assert CLASSIFICATION.fusion_key(base) is None  # fusing does not pay on a CPU (Runtime.fusing_pays_on)
    # decided from the device's name: a driver without the GPU (sending runs to Ray) fuses them
    gpu = CLASSIFICATION.fusion_key(base.replace(device="cuda:1"))
    assert gpu is not None and gpu == CLASSIFICATION.fusion_key(base.replace(device="cuda:1", seed=9))
    monkeypatch.setitem(FUSING_PAYS, "cpu", True)
    key = CLASSIFICATION.fusion_key(base)
    assert key is not None
    for differs_only_per_run in (dict(seed=3), dict(attack="upa", rate=0.3), dict(rank=64, alpha=8), dict(lr=1e-4),
                                 dict(train_size=500), dict(init="gaussian", init_scale=2.0)):
        assert CLASSIFICATION.fusion_key(base.replace(**differs_only_per_run)) == key
    for shared in (dict(max_steps=7), dict(batch_size=16), dict(max_length=64), dict(task="qnli"), dict(precision="bf16")):
        assert CLASSIFICATION.fusion_key(base.replace(**shared)) != key
    assert CLASSIFICATION.fusion_key(base.replace(method="ff")) is None


def test_a_sweep_stores_the_same_results_fused_or_not(glue_dir, tmp_path, monkeypatch):
    """Inline executor (this process, so the patched FUSING_PAYS holds): two LoRA runs fused
    into one unit, and the same spec with --fuse off, store the same metrics."""
    from ttrlab.sweep import ResultStore, run_sweep

    monkeypatch.setitem(FUSING_PAYS, "cpu", True)
    spec = {"name": "fused", "base": {**TINY, "max_steps": 4, "data_dir": str(glue_dir), "attack": "bpa"},
            "seeds": [0, 1], "axes": {"rate": [0.0, 0.2]}}
    stored = {}
    for fuse in (True, False):
        db = tmp_path / f"{fuse}.sqlite"
        summary = run_sweep(spec, db, executor="inline", progress=False, fuse=fuse)
        assert (summary["finished"], summary["failed"]) == (4, 0), summary["failures"]
        with ResultStore(db) as store:
            stored[fuse] = {r["run_key"]: r for r in store.runs()}
    assert stored[True].keys() == stored[False].keys()
    for key, run in stored[True].items():
        assert run["metrics"] == stored[False][key]["metrics"]
        assert run["result"]["train"]["fused_group"]["size"] == 4
        assert "fused_group" not in stored[False][key]["result"]["train"]


def test_fp16_runs_scale_their_own_loss(glue_dir):
    """fp16 (autocast + a GradScaler per run) fused equals fp16 alone."""
    configs = _configs(glue_dir, dict(seed=0, attack="bpa", rate=0.1, precision="fp16", device="cpu", max_steps=2, eval_size=16),
                       dict(seed=1, attack="upa", rate=0.2, precision="fp16", device="cpu", max_steps=2, eval_size=16))
    for fused, config in zip(run_group(CLASSIFICATION, configs), configs):
        _same_run(fused, CLASSIFICATION.run(config))


def test_a_model_that_cannot_fuse_trains_its_runs_alone(glue_dir, monkeypatch):
    import ttrlab.kinds.fused.group as group

    def cannot(*args, **kwargs):
        raise group.CannotFuse("test")

    monkeypatch.setattr(group, "fused_model", cannot)
    configs = _configs(glue_dir, dict(seed=0, attack="bpa", rate=0.1, max_steps=2), dict(seed=1, attack="upa", rate=0.2, max_steps=2))
    for document, config in zip(run_group(CLASSIFICATION, configs), configs):
        assert "fused_group" not in document["train"]
        _same_run(document, CLASSIFICATION.run(config))
