"""Execute one notebook with papermill, in the notebooks folder: the bottom of the orchestration.

`helpers.course` (the whole course), `helpers.sweep` and `helpers.cluster` (grids of runs, through `helpers.runs`) and
`helpers.models` (training the source model on demand) all execute notebooks through `execute`; this module imports
none of them, so the orchestration reads top-down.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .paths import PROJECT_ROOT
from .runtime import native_stderr_silenced

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"


def execute(notebook: Path, output: Path, parameters: dict[str, object], quiet: bool = False) -> None:
    """Execute one notebook with papermill, in the notebooks folder, logging its output as it runs.

    `quiet` (a notebook run from inside another notebook) logs nothing and sends the second kernel's own
    stderr (its start-up warnings) to /dev/null, so the calling cell stays clean; errors still raise.
    """
    import papermill

    with native_stderr_silenced() if quiet else contextlib.nullcontext():
        papermill.execute_notebook(str(notebook), str(output), parameters=parameters, cwd=str(NOTEBOOKS_DIR),
                                   kernel_name="python3", log_output=not quiet, progress_bar=False,
                                   kernel_manager_class=local_kernel_manager())


def local_kernel_manager() -> type:
    """Return a kernel manager that talks to its kernel over local IPC sockets where the system has them.

    Over TCP (Jupyter's default) every kernel warns that its traffic is unencrypted, once per notebook in
    `make course`; a Unix socket never leaves the machine, so there is nothing to warn about. Windows has no IPC
    transport and keeps TCP.
    """
    from jupyter_client.manager import AsyncKernelManager

    if os.name == "nt":
        return AsyncKernelManager

    class LocalKernelManager(AsyncKernelManager):
        """An AsyncKernelManager whose sockets are Unix domain sockets in Jupyter's runtime folder."""

        def __init__(self, **kwargs: object) -> None:
            """Choose the IPC transport before the connection file is written."""
            super().__init__(transport="ipc", **kwargs)

    return LocalKernelManager
