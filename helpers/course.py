"""Run the whole course: execute every notebook with papermill into outputs/notebooks/ (`make course`)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .paths import PROFILE_ENV, PROJECT_ROOT, outputs_root
from .profiles import VALID_PROFILES
from .reporting import save_json

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"


def course_notebooks(only: list[str] | None = None) -> list[Path]:
    """List the numbered notebooks in order, or those whose names start with one of `only`."""
    notebooks = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        chosen = [nb for nb in notebooks if nb.name.startswith(tuple(only))]
        if not chosen:
            raise SystemExit(f"No notebook matches {only}; notebooks: {', '.join(nb.stem for nb in notebooks)}")
        return chosen
    return notebooks


def execute(notebook: Path, output: Path, parameters: dict[str, object]) -> None:
    """Execute one notebook with papermill, in the notebooks folder, logging its output as it runs."""
    import papermill

    papermill.execute_notebook(str(notebook), str(output), parameters=parameters, cwd=str(NOTEBOOKS_DIR),
                               kernel_name="python3", log_output=True, progress_bar=False)


def main(argv: list[str] | None = None) -> int:
    """Execute the course's notebooks, carrying on past a failure; exit 1 if any failed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default=os.environ.get(PROFILE_ENV, "auto"), choices=VALID_PROFILES,
                        help="how much work each notebook does (default: auto, or $WORKBOOK_PROFILE)")
    parser.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 00 03")
    args = parser.parse_args(argv)
    folder = outputs_root() / "notebooks"
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    for notebook in course_notebooks(args.only):
        output = folder / notebook.name
        print(f"=== {notebook.name} (profile {args.profile}) -> {output}", flush=True)
        start = time.perf_counter()
        try:
            execute(notebook, output, {"PROFILE": args.profile})
            status = "ok"
        except Exception as error:  # papermill raises PapermillExecutionError and kernel errors alike
            status = f"FAILED: {type(error).__name__}: {str(error).strip().splitlines()[-1][:300]}"
        seconds = round(time.perf_counter() - start, 1)
        results.append({"notebook": notebook.name, "status": status, "seconds": seconds, "output": str(output)})
        print(f"    {status} in {seconds} s", flush=True)
    save_json(folder / "course_summary.json", {"profile": args.profile, "results": results})
    failed = [r for r in results if r["status"] != "ok"]
    for result in failed:
        print(f"{result['notebook']}: {result['status']}\n    executed notebook: {result['output']}")
    print(f"{len(results) - len(failed)} of {len(results)} notebooks ran; outputs in {folder}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
