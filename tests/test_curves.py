"""Learning curves: checkpoint evaluations at the right steps, counting the poisoned examples
seen, without changing the run; the first point that reaches a threshold."""
from __future__ import annotations

import pytest

from ttrlab.kinds.classification.config import RunConfig
from ttrlab.training.curves import reached
from ttrlab.core.errors import UserError
from ttrlab.kinds.classification.experiment import run_experiment

TINY = dict(task="sst2", model="minilm", train_size=64, eval_size=32, max_steps=7, batch_size=8, lr_preset="cpu")


def test_classification_curve_is_recorded_without_changing_the_run(glue_dir):
    base = RunConfig(**TINY, method="ff", attack="bpa", rate=0.25, seed=2, data_dir=str(glue_dir))
    plain = run_experiment(base)
    curved = run_experiment(base.replace(curve_every=3, curve_size=16))
    # the checkpoint evaluations leave training as it was: the same losses and metrics
    assert curved["train"]["final_loss"] == plain["train"]["final_loss"]
    assert curved["metrics"] == plain["metrics"]
    curve = curved["train"]["curve"]
    assert [p["step"] for p in curve] == [0, 3, 6, 7]
    assert [p["examples_seen"] for p in curve] == [0, 24, 48, 56]
    poisoned = curved["poison"]["count"]  # 16 of 64 examples poisoned; 56 examples seen in 7 steps
    assert 0 < curve[-1]["poisoned_seen"] <= poisoned and curve[0]["poisoned_seen"] == 0
    assert all(set(p) == {"step", "examples_seen", "poisoned_seen", "clean.accuracy", "asr"} for p in curve)
    assert all(0.0 <= p["asr"] <= 1.0 for p in curve)
    assert curved["train"]["curve_seconds"] > 0
    # a curve changes what the run records, so it is another run; its absence keeps old keys
    assert curved["run_key"] != plain["run_key"]
    assert base.replace(curve_size=5).run_key() == base.run_key()
    assert "curve" not in plain["train"]


def test_reached_is_the_first_point_at_or_above():
    curve = [{"step": 0, "asr": 0.0}, {"step": 5, "asr": None}, {"step": 10, "asr": 0.5}, {"step": 15, "asr": 0.9}]
    assert reached(curve, "asr", 0.5)["step"] == 10
    assert reached(curve, "asr", 0.95) is None


@pytest.mark.parametrize("values, message", [({"curve_every": -1}, "curve_every -1"), ({"curve_size": 0}, "curve_size 0")])
def test_bad_curve_settings_are_one_line_errors(values, message):
    with pytest.raises(UserError, match=message):
        RunConfig.from_dict(values).validate()


class Killed(Exception):
    pass


def test_a_killed_run_resumes_from_its_last_checkpoint_with_the_same_result(glue_dir, tmp_path):
    base = RunConfig(**TINY, method="lora", attack="bpa", rate=0.25, seed=4, data_dir=str(glue_dir), curve_every=2, curve_size=8)
    uninterrupted = run_experiment(base)
    config = base.replace(checkpoint_dir=str(tmp_path / "ckpt"))
    assert config.run_key() == base.run_key()  # where the state is kept is not part of the run
    seen = []

    def kill_at_step_6(positions, batch):
        seen.append(positions)
        if len(seen) == 6:  # steps 1-5 done; the state of step 4 is saved
            raise Killed

    with pytest.raises(Killed):
        run_experiment(config, batch_hook=kill_at_step_6)
    store = tmp_path / "ckpt" / config.run_key()
    assert (store / "state.pt").is_file()
    resumed_batches = []
    resumed = run_experiment(config, batch_hook=lambda positions, batch: resumed_batches.append(positions))
    assert len(resumed_batches) == 3 and resumed_batches[:2] == seen[4:6]  # steps 5, 6, 7 only, in the same order
    assert resumed["metrics"] == uninterrupted["metrics"]
    assert resumed["train"]["final_loss"] == uninterrupted["train"]["final_loss"]
    assert resumed["train"]["curve"] == uninterrupted["train"]["curve"]
    assert not store.exists()  # removed once the run finished
    # a corrupt state is one clear error, not a silent restart
    store.mkdir(parents=True)
    (store / "state.pt").write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot resume from"):
        run_experiment(config)
    with pytest.raises(UserError, match="needs curve_every"):
        RunConfig.from_dict({"checkpoint_dir": "x"}).validate()
