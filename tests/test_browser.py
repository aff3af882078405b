"""A real browser runs notebook 00 in JupyterLab as a student would: Run All Cells, save, no error or stderr.

JupyterLab starts on loopback with a random token, in a scratch folder holding a copy of the notebook (the
repository's copy is never saved over). Debian's Chromium, driven by playwright from PyPI, opens it through
`/lab?reset`, runs every cell, waits for the kernel to go idle and saves; the saved notebook is then read
back. A screenshot goes to outputs/browser/. Without Chromium the test is skipped and says how to get it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.paths import PROJECT_ROOT, outputs_root

NOTEBOOK = "00_setup_and_data.ipynb"
CHROMIUM = os.environ.get("WORKBOOK_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
RUN_SECONDS = 600  # the smoke profile runs notebook 00 in well under a minute; a cold data cache takes longer

pytestmark = [pytest.mark.browser, pytest.mark.notebook, pytest.mark.skipif(
    CHROMIUM is None,
    reason="browser test skipped: no Chromium found. Install Debian's (apt-get install -y chromium) or point "
           "WORKBOOK_CHROMIUM at a Chromium binary, then run `make test-browser`.")]


def free_port() -> int:
    """Ask the OS for a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Start JupyterLab on loopback with a token over a scratch copy of notebook 00; yield its URL and folder."""
    shutil.copy(PROJECT_ROOT / "notebooks" / NOTEBOOK, tmp_path / NOTEBOOK)
    port, token = free_port(), secrets.token_hex(16)
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config")})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            if server.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"JupyterLab did not start within a minute; its log:\n{(tmp_path / 'lab.log').read_text()}")
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited at start; its log:\n{(tmp_path / 'lab.log').read_text()}")
        yield f"{url}/lab/tree/{NOTEBOOK}?reset&token={token}", tmp_path
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def problems(notebook: dict) -> list[str]:
    """List a saved notebook's error and stderr outputs, and code cells that never ran."""
    found = []
    for number, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        if cell.get("execution_count") is None:
            found.append(f"cell {number} did not run")
        for output in cell.get("outputs", []):
            if output["output_type"] == "error":
                found.append(f"cell {number}: {output['ename']}: {output['evalue']}")
            elif output["output_type"] == "stream" and output["name"] == "stderr":
                found.append(f"cell {number} wrote to stderr: {''.join(output['text'])[:300]!r}")
    return found


def test_notebook_00_runs_clean_in_jupyterlab(lab: tuple[str, Path]) -> None:
    playwright = pytest.importorskip("playwright.sync_api", reason="browser test skipped: pip install playwright")
    url, folder = lab
    screenshot = outputs_root() / "browser" / NOTEBOOK.replace(".ipynb", ".png")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        indicator = page.locator(".jp-Notebook-ExecutionIndicator")
        indicator.and_(page.locator("[data-status='idle']")).wait_for(timeout=120_000)  # kernel started
        page.wait_for_timeout(1_000)
        opened_dirty = page.locator(".jp-mod-dirty").evaluate_all(  # unsaved on opening: metadata the file lacks
            "elements => elements.map(e => e.className + ' ' + (e.title || e.textContent).slice(0, 60))")
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
        page.wait_for_timeout(2_000)
        deadline = time.monotonic() + RUN_SECONDS
        while time.monotonic() < deadline:  # idle, and no cell still queued or running ([*])
            busy = page.locator(".jp-InputArea-prompt", has_text="*").count()
            if not busy and indicator.get_attribute("data-status") == "idle":
                break
            page.wait_for_timeout(1_000)
        else:
            page.screenshot(path=str(screenshot), full_page=True)
            pytest.fail(f"notebook 00 still running after {RUN_SECONDS} s in JupyterLab; see {screenshot}")
        page.locator(".lm-MenuBar-itemLabel", has_text="File").first.click()
        page.locator("li.lm-Menu-item[data-command='docmanager:save']").click()
        page.locator(".jp-mod-dirty").wait_for(state="detached", timeout=30_000)
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert not opened_dirty, f"JupyterLab marked the notebook unsaved on opening: {opened_dirty}"
    saved = json.loads((folder / NOTEBOOK).read_text())
    assert not problems(saved), "\n".join(problems(saved))
    stored = json.loads((PROJECT_ROOT / "notebooks" / NOTEBOOK).read_text())["metadata"]
    assert saved["metadata"] == stored, "saving rewrote the notebook's metadata (a diff beyond the outputs)"
    assert screenshot.stat().st_size > 10_000
