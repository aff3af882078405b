"""What a learner sees in an executed notebook: progress bars saved finished (not at "0%"), and one short notice,
the same in every notebook, when ImageNet weights are unavailable (no download tried offline)."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient
from tqdm.std import tqdm as text_tqdm

from helpers import models, progress, runner, weights
from helpers.paths import PROJECT_ROOT

CELL = """
from helpers.progress import progress_bar
for _ in progress_bar(range(10), desc="kept"):
    pass
for _ in progress_bar(range(5), desc="cleared", leave=False):
    pass
print("done")
"""


def test_outside_a_kernel_the_bar_is_plain_tqdm():
    assert not progress.in_kernel() and progress.bar_class() is text_tqdm
    assert type(progress.progress_bar(range(3), disable=True)) is text_tqdm


@pytest.mark.notebook
def test_an_executed_notebook_keeps_each_bar_in_its_final_state():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    NotebookClient(notebook, kernel_name="python3", resources={"metadata": {"path": str(PROJECT_ROOT)}}).execute()
    outputs = notebook.cells[0].outputs
    shown = [output.get("data", {}).get("text/plain", "") for output in outputs if output.output_type != "stream"]
    assert len(shown) == 2 and shown[0].startswith("kept: 100%") and "10/10" in shown[0], shown
    assert shown[1] == "", shown  # leave=False: cleared, as in a terminal
    assert not [output for output in outputs if output.get("name") == "stderr"]
    assert "0%" not in " ".join(shown).replace("100%", "")


def test_unavailable_weights_get_one_short_notice_per_notebook_and_offline_no_download(data_root, monkeypatch, capsys):
    monkeypatch.setenv("WORKBOOK_OFFLINE", "1")
    monkeypatch.setattr(weights, "_NOTICE_SHOWN", [])
    class FellBack(Exception):
        """Raised where the fallback to the course model starts: the notice has been printed by then."""

    def course_model(profile, dataset):
        raise FellBack

    monkeypatch.setattr(models, "ensure_course_checkpoint", course_model)
    import torchvision

    monkeypatch.setattr(torchvision.models, "get_model", lambda *a, **k: pytest.fail("tried to download offline"))
    with pytest.raises(FellBack):
        models.source_model("auto", "resnet18", "smoke")
    weights.unavailable_notice("the VGG16 baseline row is skipped")
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "Note: ImageNet weights are unavailable here (WORKBOOK_OFFLINE=1 and they are not pre-fetched): resnet18 "
        "falls back to the course's own source model (WEIGHTS='course').",
        "To use them, run `make prefetch` once on a machine with a network (an offline lab copies its data/).",
        "ImageNet weights unavailable (see above): the VGG16 baseline row is skipped."]


@pytest.mark.notebook
def test_make_course_kernels_talk_over_local_sockets_without_the_tcp_warning(tmp_path, capfd):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hello')")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "hello.ipynb")
    runner.execute(tmp_path / "hello.ipynb", tmp_path / "out.ipynb", {}, quiet=False)
    assert nbformat.read(tmp_path / "out.ipynb", 4).cells[0].outputs[0]["text"] == "hello\n"
    assert "without encryption" not in capfd.readouterr().err


@pytest.mark.skipif(os.name == "nt", reason="Windows keeps jupyter_client's own kernel manager")
def test_course_kernels_are_not_interrupted_on_the_way_out():
    import asyncio

    manager = runner.local_kernel_manager()()
    calls = []

    async def record_interrupt(self) -> None:
        calls.append(self.shutting_down)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(manager).__mro__[1], "_async_interrupt_kernel", record_interrupt)
        asyncio.run(manager._async_interrupt_kernel())  # a user's interrupt goes through
        manager.shutting_down = True
        asyncio.run(manager._async_interrupt_kernel())  # shutdown's own interrupt does not
    assert calls == [False]
