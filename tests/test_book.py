"""`make book`: the executed course as a static site a reader browses offline, checked in a real Chromium.

The browser test renders the course run of tests/test_course.py when this session runs it (one course per `make
test`), else notebooks 00 and 02 executed here in the smoke profile; Debian's Chromium then opens every page from
disk: it loads with no console error and no request leaving the book, every image decodes, and the search finds
LP-FT. The unit tests check the cleaning (paths, widgets, run metadata) and the message when nothing was executed.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import nbformat
import pytest
from conftest import execute_course
from nbformat.v4 import new_code_cell, new_notebook, new_output

from helpers import book
from helpers.paths import PROJECT_ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_cleaning_finishes_progress_bars_and_hides_machine_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("WORKBOOK_DATA", str(tmp_path / "cache"))
    state = {"bar": {"state": {"children": ["IPY_MODEL_label", "IPY_MODEL_progress", "IPY_MODEL_count"]}},
             "label": {"state": {"value": "training:\u2007100%"}}, "progress": {"state": {"value": 4, "max": 4}},
             "count": {"state": {"value": "\u20074/4\u2007[00:02&lt;00:00]"}}}
    widget = new_output("display_data", {"application/vnd.jupyter.widget-view+json": {"model_id": "bar"},
                                         "text/plain": "training:   0%|          | 0/4"})
    printed = new_output("stream", name="stdout", text=f"cached in {tmp_path}/cache/x.npz, code in {PROJECT_ROOT}/"
                                                       f"helpers, notes in {Path.home()}/notes")
    notebook = new_notebook(cells=[new_code_cell("1", outputs=[widget, printed])], metadata={
        "papermill": {"input_path": str(PROJECT_ROOT)}, "kernelspec": {"name": "python3", "display_name": "Python 3"},
        "widgets": {"application/vnd.jupyter.widget-state+json": {"state": state}}})
    cleaned = book.clean(notebook, book.replacements())
    assert cleaned.metadata == {"kernelspec": {"name": "python3", "display_name": "Python 3"}}
    bar, text = cleaned.cells[0].outputs
    assert bar.data == {"text/plain": "training: 100%|██████████| 4/4 [00:02<00:00]"}
    assert text.text == "cached in $WORKBOOK_DATA/x.npz, code in helpers, notes in ~/notes"


def test_without_executed_notebooks_the_book_names_make_course(tmp_path: Path):
    with pytest.raises(SystemExit, match="run `make course` first"):
        book.build(tmp_path, tmp_path / "book")


def test_the_book_never_replaces_a_folder_that_is_not_a_book(tmp_path: Path):
    (tmp_path / "notebooks").mkdir()
    nbformat.write(new_notebook(), tmp_path / "notebooks" / "00_setup_and_data.ipynb")
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.tex").write_text("keep me")
    with pytest.raises(SystemExit, match="name an empty or new one"):
        book.build(tmp_path / "notebooks", tmp_path / "thesis")
    assert (tmp_path / "thesis" / "chapter1.tex").read_text() == "keep me"


@pytest.fixture(scope="module")
def executed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Find executed notebooks: the session's course run if it has one, else 00 and 02 run here (smoke)."""
    if any("course_run" in getattr(item, "fixturenames", ()) for item in request.session.items):
        return request.getfixturevalue("course_run")
    outputs = tmp_path_factory.mktemp("book_outputs")
    assert execute_course(outputs, "--only", "00", "02", "--no-comparison") == 0
    return outputs


@pytest.mark.browser
@pytest.mark.notebook
@pytest.mark.filterwarnings("ignore:.*Check CHANGES for Sphinx API")  # MyST-Parser 5.2 on Sphinx 9
@pytest.mark.skipif(CHROMIUM is None, reason="browser test skipped: no Chromium found. Install Debian's (apt-get "
                                             "install -y chromium), then run `make test-browser`.")
def test_the_book_reads_offline_in_chromium(executed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    playwright = pytest.importorskip("playwright.sync_api", reason="browser test skipped: pip install playwright")
    monkeypatch.setenv("WORKBOOK_OUTPUTS", str(executed))  # the paths the run printed are the ones to hide
    start = time.perf_counter()
    pages = book.build(executed / "notebooks", tmp_path / "book")
    seconds = time.perf_counter() - start
    print(f"book: {len(pages)} pages in {seconds:.1f} s")
    assert len(pages) >= 3 and all(page.is_file() for page in pages)
    for page in pages:
        text = page.read_text()
        leaks = [root for root in (str(executed), str(PROJECT_ROOT), str(tmp_path)) if root in text]
        assert not leaks, f"{page.name} shows machine paths {leaks}"
    problems: list[str] = []
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page()
        page.on("console", lambda message: message.type == "error" and problems.append(f"console: {message.text}"))
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("request", lambda request: request.url.startswith("file://") or request.url.startswith("data:")
                or problems.append(f"left the book: {request.url}"))
        figures = 0
        for html in pages:
            page.goto(html.as_uri(), wait_until="load")
            assert page.title(), f"{html.name} has no title"
            images = page.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])")
            assert all(width > 0 for _, width in images), f"{html.name}: images that did not load: {images}"
            figures += len(images)
        assert figures >= 3, "the executed notebooks' figures are missing from the book"
        page.goto((tmp_path / "book" / "search.html").as_uri() + "?q=LP-FT", wait_until="load")
        found = page.locator("#search-results ul.search li")
        found.first.wait_for(timeout=30_000)
        assert found.count() >= 1, "the search finds no page for LP-FT"
        browser.close()
    assert not problems, "\n".join(problems)
