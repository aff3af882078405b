"""The executed course as a static site (`make book`): the notebooks `make course` ran, rendered, never re-run.

Sphinx with MyST-NB (execution off) turns outputs/notebooks/*.ipynb into one page per notebook, figures and tables
as the run left them, under an index page made from the README, with navigation and search; MathJax is served from
the site itself, so the book reads offline. Before rendering, each notebook is cleaned in a scratch copy: machine
paths become `~`, project-relative paths or the variable that set them ($WORKBOOK_DATA...), run metadata is dropped,
and a progress-bar widget (whose saved text is its first frame) is replaced by its final state.
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from .course import course_notebooks
from .paths import PATH_VARIABLES, PROJECT_ROOT, env_path, outputs_root, shown

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
BAR_WIDTH = 10  # characters of a rebuilt progress bar, as tqdm draws it in a terminal
SETTINGS = {
    "project": "Transfer-learning workbook",
    "extensions": ["myst_nb", "sphinx-mathjax-offline"],
    "nb_execution_mode": "off",  # the outputs are those of `make course`
    "nb_merge_streams": True,
    "myst_enable_extensions": ["dollarmath", "amsmath"],
    "html_theme": "alabaster",
    "html_sidebars": {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]},
    "html_show_sourcelink": False,
    "html_copy_source": False,
    "html_show_search_summary": False,  # summaries fetch pages, which a browser refuses to a book read from disk
    "exclude_patterns": ["_build"],
    "suppress_warnings": ["myst.xref_missing", "myst.header"],  # the README links into the repository
}


def replacements() -> list[tuple[str, str]]:
    """List (machine path, what the book shows instead), longest first: path variables, the project, home."""
    pairs = [(str(path), f"${variable}") for variable in PATH_VARIABLES if (path := env_path(variable))]
    pairs += [(f"{PROJECT_ROOT}/", ""), (str(PROJECT_ROOT), "."), (str(Path.home()), "~")]
    return sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)


def scrub(text: str, pairs: list[tuple[str, str]]) -> str:
    """Replace every machine path in `text`."""
    for old, new in pairs:
        text = text.replace(old, new)
    return text


def widget_text(model_id: str, widgets: dict) -> str | None:
    """Spell a saved progress-bar widget (tqdm's HBox of label, bar and counter) in its final state, or None."""
    children = widgets.get(model_id, {}).get("state", {}).get("children", [])
    parts = []
    for child in children:
        state = widgets.get(child.removeprefix("IPY_MODEL_"), {}).get("state", {})
        if "max" in state:
            filled = round(BAR_WIDTH * state["value"] / state["max"]) if state["max"] else 0
            parts.append("|" + "█" * filled + " " * (BAR_WIDTH - filled) + "|")
        else:
            parts.append(html.unescape(re.sub(r"<[^>]+>", "", state.get("value", ""))).replace("\u2007", " "))
    return "".join(parts) or None


def clean(notebook: nbformat.NotebookNode, pairs: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """Drop run metadata and widgets, finish frozen progress bars and scrub machine paths, in place."""
    widgets = notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    notebook.metadata = {key: notebook.metadata[key] for key in ("kernelspec", "language_info")
                         if key in notebook.metadata}
    for cell in notebook.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        cell.source = scrub(cell.source, pairs)
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                text = widget_text(data.pop(WIDGET_VIEW)["model_id"], widgets)
                data["text/plain"] = text or data.get("text/plain", "")
            for key, value in list(data.items()):
                if isinstance(value, str):
                    data[key] = scrub(value, pairs)
            if "text" in output:
                output.text = scrub(output.text, pairs)
            if "traceback" in output:
                output.traceback = [scrub(line, pairs) for line in output.traceback]
            if data or output.output_type not in ("display_data", "execute_result"):
                kept.append(output)
        if cell.cell_type == "code":
            cell.outputs = kept
    return notebook


def executed(folder: Path) -> tuple[list[Path], list[str]]:
    """Find the executed notebooks in `folder`, in course order; also name the course notebooks missing there."""
    found = [(folder / notebook.name, notebook.name) for notebook in course_notebooks()]
    return [path for path, _ in found if path.is_file()], [name for path, name in found if not path.is_file()]


def write_index(source: Path, notebooks: list[Path]) -> None:
    """Write the book's front page (the README, then the notebooks' table of contents) and copy its images."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    for link in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", readme):
        if (PROJECT_ROOT / link).is_file():
            (source / link).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(PROJECT_ROOT / link, source / link)
    pages = "\n".join(sorted(path.stem for path in notebooks))
    (source / "index.md").write_text(f"{readme}\n\n```{{toctree}}\n:maxdepth: 1\n:caption: Notebooks\n\n{pages}\n```\n")


def build(folder: Path, out: Path) -> list[Path]:
    """Render the executed notebooks in `folder` and the README into a static site in `out`; return the pages."""
    from sphinx.application import Sphinx

    notebooks, missing = executed(folder)
    if not notebooks:
        raise SystemExit(f"No executed notebook in {shown(folder)}: run `make course` first (it executes every "
                         "notebook there), then `make book`.")
    if missing:
        print(f"Not in {shown(folder)} (the book leaves them out; `make course` executes them): {', '.join(missing)}")
    if out.exists() and any(out.iterdir()) and not (out / "searchindex.js").is_file():
        raise SystemExit(f"{shown(out)} holds files but no book: the build replaces that folder, so name an empty "
                         "or new one (--out), or a book's.")
    pairs = replacements()
    with tempfile.TemporaryDirectory(prefix="book-") as scratch:
        source = Path(scratch) / "source"
        source.mkdir()
        write_index(source, notebooks)
        for path in notebooks:
            nbformat.write(clean(nbformat.read(path, as_version=4), pairs), source / path.name)
        site = Path(scratch) / "site" / "html"  # MyST-NB writes beside the site's folder: keep that in scratch
        app = Sphinx(str(source), None, str(site), str(Path(scratch) / "doctrees"), "html",
                     confoverrides=dict(SETTINGS), status=None, warning=sys.stderr, freshenv=True)
        app.build()
        if app.statuscode:
            raise SystemExit(f"Sphinx failed (status {app.statuscode}); its messages are above.")
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(site, out)
    return [out / "index.html", *(out / f"{path.stem}.html" for path in notebooks)]


def main(argv: list[str] | None = None) -> int:
    """Build the book from outputs/notebooks/ (or another folder of executed notebooks) into outputs/book/."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--notebooks", type=Path, default=None,
                        help="folder of executed notebooks (default outputs/notebooks, written by `make course`)")
    parser.add_argument("--out", type=Path, default=None, help="where the site goes (default outputs/book)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = (args.out or outputs_root() / "book").absolute()
    pages = build((args.notebooks or outputs_root() / "notebooks").absolute(), out)
    print(f"{len(pages)} pages in {time.perf_counter() - start:.0f} s: open {shown(out / 'index.html')} in a browser "
          f"(or serve it: python -m http.server -d {shown(out)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
