"""Composed run settings: every setting lives in exactly one section, owned by one module; the
three run kinds share the sections they have in common; a run's identity is what it was before
the sections existed (stored databases resume), and device/precision enter it as documented."""
import dataclasses

import pytest

from ttrlab.cli.run import main_job_spec
from ttrlab.kinds.classification.config import RunConfig
from ttrlab.core.errors import UserError
from ttrlab.kinds.generative.config import GenConfig
from ttrlab.methods.lora import LoRASettings
from ttrlab.models.runtime import ModelSettings
from ttrlab.core.settings import Section
from ttrlab.sweep import load_spec
from ttrlab.kinds.theory.config import TheoryConfig
from ttrlab.training.settings import OptimSettings

CONFIGS = (RunConfig, GenConfig, TheoryConfig)

# The run keys the main job stored before settings were composed (ttrlab 0.1.0 at commit cd0b299,
# runs/main.sqlite of a fresh clone). A database written then must resume now.
MAIN_JOB_KEYS = {
    "0da132b91c3b726f497e33b6", "0ef5432102c7b73f236a0675", "3d09f33a20e133a76be513b0", "75568f234e63ccec1253ed41",
    "9e3e87327bfc0ab75778c1fa", "9f66be42ba6c7a5c8127587f", "a2f4c5a7b376917a2c14a50f", "abc6ecf710512b9208d012df",
    "aca52157c90db5063bb71870", "b52bb71f45c93cef8d5f78e5", "b8cbc51bbcc22db0a37188c7", "c4f7180a580978a0bc6e3873",
    "c92476451a46c4cfba9f102f", "d60324e349049443c9cf58f4", "d694066acd89de73b453dd27", "d9c62e18f72c5b2b0dc9f11a",
    "e8a3858dc9d887ea764a6e3e", "f857672c77b33e79100776f1", "fc27c7bf2635f2f58fd7109c", "fca73ed3fc9eb94f2667c8fa",
}


@pytest.mark.parametrize("config_type", CONFIGS)
def test_every_setting_is_declared_by_exactly_one_section(config_type):
    owners: dict[str, list[str]] = {}
    for section in config_type.sections():
        for name in section.__dict__.get("__annotations__", {}):
            if name.isupper():  # class constants (KIND, METHOD_SETTINGS)
                continue
            owners.setdefault(name, []).append(section.__name__)
    for name in (f.name for f in dataclasses.fields(config_type)):
        declared = [o for o in owners[name] if o != config_type.__name__]
        assert len(declared) == 1, (name, owners[name])  # the kind may only change a default


def test_the_kinds_share_their_common_sections():
    for config_type in CONFIGS:
        assert issubclass(config_type, ModelSettings) and issubclass(config_type, LoRASettings)
        assert issubclass(config_type, OptimSettings)
    assert GenConfig().target_modules == "q_proj,v_proj" and RunConfig().target_modules == "auto"
    assert RunConfig().resolved()["target_modules"] == "query,value"  # peft's default for MiniLM's BERT
    assert GenConfig().model == "smollm2" and RunConfig().model == "minilm"
    assert LoRASettings.of(GenConfig(rank=4)) == LoRASettings(rank=4, target_modules="q_proj,v_proj")
    assert all(issubclass(s, Section) for s in RunConfig.sections())


def test_main_job_run_keys_are_those_stored_before():
    spec = load_spec(main_job_spec())
    assert {r.run_key for r in spec.expand().runs} == MAIN_JOB_KEYS


def test_device_is_not_identity_precision_is():
    base = RunConfig(method="lora", attack="bpa", rate=0.1)
    assert base.replace(device="cuda:3").run_key() == base.run_key() == base.replace(device="cpu").run_key()
    assert base.replace(precision="bf16").run_key() != base.run_key()
    assert base.replace(precision="bf16").run_key() != base.replace(precision="fp16").run_key()
    assert "device" not in base.identity_values() and "precision" not in base.identity_values()  # fp32: as before
    assert base.replace(precision="bf16").identity_values()["precision"] == "bf16"


def test_method_owned_settings_count_only_for_their_method():
    assert RunConfig(method="ff", rank=4).run_key() == RunConfig(method="ff", rank=64, init_scale=0.5).run_key()
    assert RunConfig(method="lora", rank=4).run_key() != RunConfig(method="lora", rank=64).run_key()
    assert RunConfig(method="ff").learning_rate() == 3e-6 and RunConfig(method="lora", rank=8).learning_rate() == 3e-5
    assert RunConfig(method="lora", rank=64).learning_rate() == 3e-6  # the paper's high-rank rate
    assert GenConfig(method="lora").learning_rate() == 2e-4 and GenConfig(method="ff").learning_rate() == 2e-5


@pytest.mark.parametrize("values, message", [
    ({"precision": "fp8"}, r"unknown precision 'fp8' .*; allowed: bf16, fp16, fp32"),
    ({"device": "tpu"}, r"device 'tpu' is not one of auto, cpu, cuda, cuda:N, mps"),
    ({"device": "cuda:x"}, r"device 'cuda:x' is not one of"),
    ({"attack": "badnet"}, r"attack 'badnet' does not apply to classification runs; allowed: .*bpa"),
    ({"lr_preset": "fast"}, r"lr_preset 'fast' is not one of paper, cpu, backdoorllm"),
])
def test_bad_settings_name_the_value_and_what_is_allowed(values, message):
    with pytest.raises(UserError, match=message):
        RunConfig.from_dict(values).validate()


def test_generative_attacks_are_checked_against_the_generative_kind():
    with pytest.raises(UserError, match=r"attack 'upa' does not apply to generative runs; allowed: badnet"):
        GenConfig.from_dict({"attack": "upa"}).validate()
    GenConfig.from_dict({"attack": "none", "rate": 0.0}).validate()  # 'none' applies to every kind

