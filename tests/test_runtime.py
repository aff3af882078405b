"""Runtime: seeding, device choice, environment report, and profile resolution."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch

from helpers import profiles, runtime


def test_one_seed_call_repeats_random_numpy_and_torch():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    runtime.seed_everything(11)
    first = draw()
    runtime.seed_everything(11)
    assert draw() == first
    runtime.seed_everything(12)
    assert draw() != first


def test_seed_reports_frameworks_it_seeded():
    assert {"random", "numpy", "torch"} <= set(runtime.seed_everything(0))


def test_device_falls_back_to_cpu_without_cuda(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runtime.torch_device().type == "cpu"
    assert "torch device: cpu" in capsys.readouterr().out


def test_environment_report_names_versions_and_device():
    report = runtime.environment_report(verbose=False)
    assert report["python"].count(".") == 2
    assert "numpy" in report["packages"] and "torch" in report["packages"]
    assert report["device"]["cpu_count"] >= 1 and report["device"]["torch_device"] in {"cpu", "cuda", "mps"}


def test_profile_values_and_parameters_that_win(monkeypatch):
    monkeypatch.delenv("WORKBOOK_PROFILE", raising=False)
    config = profiles.resolve_config("00_setup_and_data", "cpu", examples_per_class=None)
    assert config["profile"] == "cpu" and config["examples_per_class"] == 8
    config = profiles.resolve_config("00_setup_and_data", "cpu", examples_per_class=3)
    assert config["examples_per_class"] == 3 and config["set_by_parameter"] == ["examples_per_class"]


def test_environment_variable_overrides_the_notebook_profile(monkeypatch):
    monkeypatch.setenv("WORKBOOK_PROFILE", "smoke")
    assert profiles.resolve_config("00_setup_and_data", "full")["profile"] == "smoke"


@pytest.mark.parametrize("gpu, expected", [(True, "full"), (False, "cpu")])
def test_auto_profile_follows_the_gpu(monkeypatch, gpu, expected):
    monkeypatch.delenv("WORKBOOK_PROFILE", raising=False)
    monkeypatch.setattr(profiles, "has_gpu", lambda: gpu)
    assert profiles.choose_profile("auto") == expected


def test_unknown_profile_and_parameter_list_valid_values(monkeypatch):
    monkeypatch.delenv("WORKBOOK_PROFILE", raising=False)
    with pytest.raises(ValueError, match="smoke, cpu, full, auto"):
        profiles.choose_profile("fast")
    monkeypatch.setenv("WORKBOOK_PROFILE", "turbo")
    with pytest.raises(ValueError, match="WORKBOOK_PROFILE.*smoke, cpu, full, auto"):
        profiles.choose_profile("auto")
    monkeypatch.delenv("WORKBOOK_PROFILE")
    with pytest.raises(ValueError, match="valid: examples_per_class"):
        profiles.resolve_config("00_setup_and_data", "cpu", epochs=3)


def test_every_profile_table_defines_the_same_knobs():
    for notebook, table in profiles.PROFILES.items():
        assert set(table) == {"smoke", "cpu", "full"}, notebook
        assert len({frozenset(knobs) for knobs in table.values()}) == 1, notebook


def test_synthetic_sizes_leave_enough_training_images_after_validation():
    for notebook, table in profiles.PROFILES.items():
        for profile, knobs in table.items():
            wanted = knobs.get("train_per_class") or knobs.get("labels_per_class")
            if wanted and "synthetic_train_per_class" in knobs:
                assert wanted <= 0.9 * knobs["synthetic_train_per_class"], (notebook, profile)


# ------------------------------------------------------------------------ the device and precision rules, simulated

def simulate(monkeypatch, cuda: bool, mps: bool = False, bf16: bool = True) -> None:
    """Make torch see a CUDA GPU (with or without native bfloat16) and Apple MPS, or not, on this CPU machine."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "Simulated GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"),
                                                 (False, False, "cpu")])
def test_device_rule_is_cuda_then_mps_then_cpu(monkeypatch, capsys, cuda, mps, expected):
    simulate(monkeypatch, cuda, mps)
    assert runtime.torch_device().type == expected
    assert f"torch device: {expected}" in capsys.readouterr().out


@pytest.mark.parametrize("device, bf16, expected", [("cuda", True, "bf16"), ("cuda", False, "fp16"),
                                                    ("mps", True, "fp32"), ("cpu", True, "fp32")])
def test_precision_rule_bf16_then_fp16_on_cuda_fp32_elsewhere(monkeypatch, device, bf16, expected):
    simulate(monkeypatch, cuda=device == "cuda", mps=device == "mps", bf16=bf16)
    assert runtime.precision(torch.device(device)) == expected


def test_on_the_cpu_autocast_and_the_scaler_change_nothing():
    cpu = torch.device("cpu")
    with runtime.autocast(cpu):
        assert (torch.ones(4, 4) @ torch.ones(4, 4)).dtype == torch.float32
    assert not runtime.grad_scaler(cpu).is_enabled()


def test_an_active_scaler_takes_the_same_step_as_a_plain_one():
    """optimizer_step with the fp16 path's scaler (enabled here on the CPU) unscales before stepping."""
    torch.manual_seed(0)
    start, x = torch.nn.Linear(4, 2), torch.randn(8, 4)
    stepped = []
    for enabled in (False, True):
        model = copy.deepcopy(start)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        runtime.optimizer_step(optimizer, model(x).square().mean(), torch.amp.GradScaler("cpu", enabled=enabled))
        stepped.append(model.weight.detach())
    torch.testing.assert_close(stepped[0], stepped[1])
    assert not torch.equal(stepped[0], start.weight)


def test_run_record_names_device_precision_layout_and_cudnn_settings(monkeypatch):
    recorded = runtime.environment_report(verbose=False)["device"]
    assert recorded["precision"] == "fp32" and recorded["channels_last"] is True
    assert recorded["cudnn"]["deterministic"] is False and "bit for bit" in recorded["cudnn"]["note"]
    simulate(monkeypatch, cuda=True)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91000)
    recorded = runtime.environment_report(verbose=False)["device"]
    assert recorded["torch_device"] == "cuda" and recorded["precision"] == "bf16"
    assert recorded["cuda"]["name"] == "Simulated GPU" and recorded["cudnn"]["version"] == 91000


def test_seeding_on_a_gpu_prints_the_determinism_note(monkeypatch, capsys):
    simulate(monkeypatch, cuda=True)
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: None)
    runtime.seed_everything(0)
    assert "not bit for bit" in capsys.readouterr().out


@pytest.mark.parametrize("cuda, bf16, expected", [(True, True, "mixed_bfloat16"), (True, False, "mixed_float16"),
                                                  (False, True, "float32")])
def test_keras_policy_follows_the_torch_backends_gpu(monkeypatch, cuda, bf16, expected):
    from helpers import keras_models

    simulate(monkeypatch, cuda=cuda, bf16=bf16)
    assert keras_models.keras_precision_policy("torch") == expected


@pytest.mark.parametrize("gpus, capability, expected", [([], None, "float32"), (["GPU:0"], (9, 0), "mixed_bfloat16"),
                                                        (["GPU:0"], (7, 0), "mixed_float16")])
def test_keras_policy_follows_the_gpu_tensorflow_sees(monkeypatch, gpus, capability, expected):
    from helpers import keras_models

    tf = runtime.import_tensorflow()
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus)
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda gpu: {"compute_capability": capability})
    assert keras_models.keras_precision_policy("tensorflow") == expected
