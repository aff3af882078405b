"""Runtime: seeding, device choice, environment report, and profile resolution."""

from __future__ import annotations

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
