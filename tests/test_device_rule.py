"""One device rule everywhere, the `full` profile's GPU targets stated, the GPU install switch: checked on the CPU."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import jupytext
import pytest

from helpers import profiles

ROOT = Path(__file__).resolve().parents[1]
SCANNED = sorted([*ROOT.glob("notebooks/[0-9][0-9]_*.py"), *ROOT.glob("helpers/*.py"), *ROOT.glob("benchmarks/*.py")])
PIN = re.compile(r"""torch\.device\(\s*["']cpu["']|device\s*=\s*["']cpu["']|\.to\(\s*["']cpu["']""")
MARKER = "# device-pin:"
# Lines that pin the CPU on purpose, each with a MARKER comment saying why (and no profile promising GPU speed).
ALLOWED = {("helpers/distill.py", 'cpu = torch.device("cpu")')}
GPU_TARGET = re.compile(r"`full` profile on one GPU[^:]*: about (\d+) min \(a target, not yet measured\)")
UNMEASURED = "the GPU path is tested only on CPU with CUDA simulated away; no notebook has been run on a GPU yet"


def torch_device_lines() -> range:
    """The lines of `runtime.torch_device`, the one function that may name the CPU device."""
    tree = ast.parse((ROOT / "helpers/runtime.py").read_text())
    found = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "torch_device")
    return range(found.lineno, found.end_lineno + 1)


def device_pins() -> list[tuple[str, int, str]]:
    """Every line of the notebooks, helpers and benchmarks that pins a torch device to the CPU."""
    rule = torch_device_lines()
    pins = []
    for path in SCANNED:
        name = str(path.relative_to(ROOT))
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if PIN.search(line.split("#")[0]) and not (name == "helpers/runtime.py" and number in rule):
                pins.append((name, number, line.strip()))
    return pins


def test_the_pin_pattern_catches_the_pins_this_rule_replaced():
    for line in ('device = torch.device("cpu")  # small models', "model.to('cpu')", 'run(x, device="cpu")',
                 "torch_train.to_device(model, torch.device('cpu'))"):
        assert PIN.search(line), line
    for line in ("logits.cpu()", 'torch.load(blob, map_location="cpu")', "device = runtime.torch_device()"):
        assert not PIN.search(line), line


def test_no_hard_coded_device_outside_the_rule_and_its_allow_list():
    pins = device_pins()
    unexplained = [f"{name}:{number}: {line}" for name, number, line in pins
                   if (name, line.split("#")[0].strip()) not in ALLOWED or not line.partition(MARKER)[2].strip()]
    assert not unexplained, ("take the device from helpers.runtime.torch_device(), or add the line to ALLOWED with a "
                             f"'{MARKER} why' comment:\n" + "\n".join(unexplained))
    stale = ALLOWED - {(name, line.split("#")[0].strip()) for name, _, line in pins}
    assert not stale, f"allow-listed lines that no longer exist: {stale}"


def test_every_notebook_has_a_profile_table_with_full_values():
    notebooks = {path.stem: path for path in ROOT.glob("notebooks/[0-9][0-9]_*.py")}
    assert set(profiles.PROFILES) == set(notebooks)
    for name, path in notebooks.items():
        assert f'profiles.resolve_config("{name}"' in path.read_text(), name
        table = profiles.PROFILES[name]
        assert table["full"] and set(table["full"]) == set(table["cpu"]), name


def test_gpu_targets_cover_the_course_within_the_hour():
    assert set(profiles.GPU_TARGET_MINUTES) == set(profiles.PROFILES) | {"comparison"}
    assert sum(profiles.GPU_TARGET_MINUTES.values()) <= profiles.GPU_TARGET_TOTAL_MINUTES == 60


def test_readme_states_each_target_and_that_none_is_measured():
    readme = (ROOT / "README.md").read_text()
    assert UNMEASURED in " ".join(readme.split())
    for name, minutes in profiles.GPU_TARGET_MINUTES.items():
        assert re.search(rf"^\| `?{name}`? \|.*\| {minutes} \|$", readme, re.MULTILINE), name
    assert "make course GPU=1" in readme and "make test-gpu" in readme


@pytest.mark.parametrize("path", sorted(ROOT.glob("notebooks/[0-9][0-9]_*.py")), ids=lambda path: path.stem)
def test_notebooks_that_use_a_gpu_state_their_target(path: Path):
    source = path.read_text()
    if "runtime.torch_device(" not in source and "runtime.tf_gpus(" not in source:
        pytest.skip(f"{path.stem} picks no device: its target is in the README")
    text = " ".join(" ".join(c.source for c in jupytext.read(path).cells if c.cell_type == "markdown").split())
    stated = GPU_TARGET.findall(text)
    assert stated == [str(profiles.GPU_TARGET_MINUTES[path.stem])], stated


def requirement_lines(name: str) -> set[str]:
    """The requirement lines of a file, comments and blank lines left out."""
    return {line.strip() for line in (ROOT / name).read_text().splitlines() if line.split("#")[0].strip()}


def test_gpu_requirements_differ_from_the_default_only_in_tensorflow():
    cpu, gpu = requirement_lines("requirements.txt"), requirement_lines("requirements-gpu.txt")
    assert cpu - gpu == {"tensorflow-cpu==2.21.0"} and gpu - cpu == {"tensorflow[and-cuda]==2.21.0"}
    assert "-r requirements-base.txt" in cpu & gpu
    base = requirement_lines("requirements-base.txt")
    assert {"torch==2.14.1", "torchvision==0.29.1", "keras==3.15.1"} <= base
    assert not [line for line in base if line.startswith("tensorflow")]


def make_dry_run(*arguments: str) -> str:
    """What make would run (`-n`: nothing runs; `-B`: as if the venv were out of date)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    return subprocess.run(["make", "-n", "-B", *arguments], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


def test_the_default_setup_installs_cpu_tensorflow_and_nothing_for_a_gpu():
    plan = make_dry_run("setup")
    assert "-r requirements.txt" in plan and "requirements-gpu.txt" not in plan and "touch .venv/.installed\n" in plan


def test_gpu_1_installs_the_gpu_requirements_in_its_own_stamp():
    plan = make_dry_run("setup", "GPU=1")
    assert "-r requirements-gpu.txt" in plan and "touch .venv/.installed-gpu" in plan
    assert "uninstall --quiet --yes tensorflow tensorflow-cpu" in plan  # when switching from a CPU venv


def test_make_test_gpu_runs_the_gpu_tests():
    assert "tests/test_gpu.py" in make_dry_run("test-gpu")
