"""Execute one notebook with papermill, in the notebooks folder: the bottom of the orchestration.

`helpers.course` (the whole course), `helpers.sweep` and `helpers.cluster` (grids of runs, through `helpers.runs`) and
`helpers.models` (training the source model on demand) all execute notebooks through `execute`; this module imports
none of them, so the orchestration reads top-down.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
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
    `make course`; a Unix socket never leaves the machine, so there is nothing to warn about. Each kernel gets its own
    socket prefix: the default one is shared, and two kernels at once (a sweep's workers) would read each other's
    messages. Windows has no IPC transport and keeps TCP.
    """
    from jupyter_client.manager import AsyncKernelManager

    if os.name == "nt":
        return AsyncKernelManager

    class LocalKernelManager(AsyncKernelManager):
        """An AsyncKernelManager whose sockets are Unix domain sockets of its own in the temporary folder."""

        def __init__(self, **kwargs: object) -> None:
            """Choose the IPC transport and a socket prefix no other kernel shares (sweeps run several at once)."""
            prefix = Path(tempfile.gettempdir()) / f"kernel-{uuid.uuid4().hex[:16]}"  # short: sockets allow ~100 chars
            super().__init__(transport="ipc", ip=str(prefix), **kwargs)

        async def _async_interrupt_kernel(self) -> None:
            """Interrupt, except on the way out: papermill shuts a kernel down once its cells are done.

            jupyter_client interrupts every kernel before asking it to shut down; a kernel caught inside a message
            handler then logs "KeyboardInterrupt caught in kernel" to the terminal (often with two runs at once). A
            kernel still busy at shutdown is killed after the shutdown request's grace period anyway.
            """
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return LocalKernelManager
