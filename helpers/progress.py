"""Progress bars that a saved notebook shows finished.

`tqdm.auto` draws a widget in a notebook; a notebook executed by papermill (or opened anywhere but a live JupyterLab:
GitHub, exported HTML, a book) shows only the widget's text fallback, frozen at its first state, "0% 0/N". Inside a
kernel, `progress_bar` instead redraws one text output in place through a display handle: the front-end shows it
moving, and the executor records each redraw into the same output, so the saved notebook keeps the last one. Outside
a kernel (a terminal, a script, a test) it is plain `tqdm`.
"""

from __future__ import annotations

import io
from typing import Any

from tqdm.std import tqdm as text_tqdm


def in_kernel() -> bool:
    """Tell whether this code runs in a Jupyter kernel (where a display handle reaches the notebook)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class NotebookBar(text_tqdm):
    """A text progress bar kept in one notebook output, redrawn in place; leave=False clears it at the end."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Open the output the bar redraws, then start the bar (tqdm draws it once at the start)."""
        from IPython.display import display

        self._handle = display({"text/plain": ""}, raw=True, display_id=True)
        kwargs.update(file=io.StringIO(), ncols=kwargs.get("ncols") or 100)  # the text goes to the handle, not here
        kwargs.setdefault("mininterval", 0.5)
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        """Redraw the bar's output: the bar as tqdm formats it, or `msg` ("" clears it)."""
        self._handle.update({"text/plain": self.__str__() if msg is None else msg}, raw=True)
        return True


def bar_class() -> type[text_tqdm]:
    """Return the bar class for here: `NotebookBar` in a kernel, plain tqdm elsewhere (for tqdm_class= arguments)."""
    return NotebookBar if in_kernel() else text_tqdm


def progress_bar(*args: Any, **kwargs: Any) -> text_tqdm:
    """Return a tqdm bar that a saved notebook shows in its final state (see the module docstring); tqdm's arguments."""
    return (text_tqdm if kwargs.get("disable") else bar_class())(*args, **kwargs)
