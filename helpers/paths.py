"""Where the course keeps its data and outputs, and whether it may use the network."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; file pairs are then written without an inter-process lock
    fcntl = None

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DATA_ENV = "WORKBOOK_DATA"  # moves the cache root (datasets, features, checkpoints, weights)
OUTPUTS_ENV = "WORKBOOK_OUTPUTS"  # moves executed notebooks, metrics and benchmark reports
OFFLINE_ENV = "WORKBOOK_OFFLINE"  # 1 turns every download off
CIFAR10_SOURCE_ENV = "WORKBOOK_CIFAR10_SOURCE"  # a local ImageFolder copy of CIFAR-10 (folder or .tar.gz)
PROFILE_ENV = "WORKBOOK_PROFILE"  # forces a profile in every notebook (smoke, cpu, full, auto)
CACHE_ENV = "WORKBOOK_CACHE"  # where caches go when the data root is read-only (default ~/.cache/transfer-workbook)

PREFETCH_COMMAND = "make prefetch"
PATH_VARIABLES = (DATA_ENV, OUTPUTS_ENV, CIFAR10_SOURCE_ENV, CACHE_ENV)


def launch_directory() -> Path:
    """Return the folder the user typed the command in: the shell's PWD, which a kernel started elsewhere inherits.

    Papermill and Jupyter start kernels in notebooks/, but leave PWD as the user's shell set it, so a relative path
    the user gave is resolved where they meant it.
    """
    pwd = os.environ.get("PWD")
    return Path(pwd) if pwd and Path(pwd).is_absolute() and Path(pwd).is_dir() else Path.cwd()


def env_path(variable: str) -> Path | None:
    """Read a path variable as an absolute path (`~` expanded, a relative one taken from the launch folder), or None."""
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else launch_directory() / path


def absolute_path_variables() -> None:
    """Rewrite every path variable set in this process as an absolute path, so the kernels it starts agree with it."""
    for variable in PATH_VARIABLES:
        path = env_path(variable)
        if path is not None:
            os.environ[variable] = str(path)


def shown(path: Path | str) -> str:
    """Spell a path for a notebook's output: relative to the project or `~`, never the author's whole file system."""
    path = Path(path).expanduser().absolute()
    for base, prefix in ((PROJECT_ROOT, ""), (Path.home(), "~/")):
        if path.is_relative_to(base):
            return prefix + str(path.relative_to(base)) if path != base else (prefix.rstrip("/") or ".")
    return str(path)


def _folder(path: Path, variable: str) -> Path:
    """Create a folder the course needs, or say which variable names a path that cannot be one."""
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{variable}={path} is a file, not a folder. Point {variable} at a folder "
                                 "(it is created if missing), or unset it.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # permission denied, a file on the way, a read-only file system
        raise type(error)(f"Cannot create {path} (from {variable}): {error.strerror or error}. Point {variable} at a "
                          "folder you can write, or create it first.") from None
    return path


def _data_root_path() -> Path:
    """Return the cache root's path without creating it."""
    return env_path(DATA_ENV) or PROJECT_ROOT / "data"


def data_root() -> Path:
    """Return the cache root, `data/` in the checkout unless WORKBOOK_DATA moves it (it may be read-only)."""
    return _folder(_data_root_path(), DATA_ENV)


def is_writable(folder: Path) -> bool:
    """Tell whether files can be created in a folder (a classroom share is often read-only)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _user_cache_path() -> Path:
    """Return the per-user cache for a read-only data root: WORKBOOK_CACHE, else ~/.cache/transfer-workbook."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "transfer-workbook"
    return env_path(CACHE_ENV) or default


def cache_dir(kind: str) -> Path:
    """Return where to write cache files of one kind: under the data root, or the user cache if that is read-only."""
    shared = data_root() / kind
    return shared if is_writable(shared) else _folder(_user_cache_path() / kind, CACHE_ENV)


def cached_files(kind: str, name: str) -> list[Path]:
    """Return the existing cache files of one name, the data root's first, then the user cache's."""
    folders = dict.fromkeys([data_root() / kind, _user_cache_path() / kind])
    return [folder / name for folder in folders if (folder / name).is_file()]


def atomic_save(path: Path, save: Callable[[str], None], suffix: str = ".part") -> Path:
    """Let `save` write a uniquely named temporary neighbour of `path` (by its name), then rename it into place.

    Readers never see half a file, and two runs writing the same file both succeed (the last rename wins). `suffix`
    is for savers that insist on a file extension (Keras's `.weights.h5`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    try:
        save(tmp_name)
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; a shared classroom cache should be readable
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def file_lock(lock: Path, shared: bool = False) -> Iterator[bool]:
    """Hold an inter-process lock (fcntl.flock) on a lock file, so readers and writers of a file pair take turns.

    Yields whether a lock is held: False where there is no fcntl (Windows) or the lock file cannot be opened (a
    read-only share, where nobody writes), and then nothing is serialised.
    """
    if fcntl is None:
        yield False
        return
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        try:
            handle = os.open(lock, os.O_RDONLY)
        except OSError:
            yield False
            return
    try:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield True
    finally:
        os.close(handle)  # closing the descriptor releases the lock


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Write a file atomically through a stream (see `atomic_save`)."""

    def save(name: str) -> None:
        """Open the temporary file and hand its stream to `write`."""
        with open(name, "wb") as stream:
            write(stream)

    return atomic_save(path, save)


def atomic_write_text(path: Path, text: str) -> Path:
    """Write a text file atomically (records and sidecars that other runs read back)."""
    return atomic_write(path, lambda stream: stream.write(text.encode()))


def outputs_root() -> Path:
    """Return the folder for executed notebooks, metrics and benchmarks (`outputs/`)."""
    return _folder(env_path(OUTPUTS_ENV) or PROJECT_ROOT / "outputs", OUTPUTS_ENV)


def is_offline() -> bool:
    """Tell whether WORKBOOK_OFFLINE forbids every download."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def configure_framework_caches() -> None:
    """Point torch hub and Keras caches under the data root so pre-fetched weights are found."""
    root = _data_root_path()  # not created here: `import helpers` must not fail on a bad WORKBOOK_DATA
    os.environ.setdefault("TORCH_HOME", str(root / "torch"))
    os.environ.setdefault("KERAS_HOME", str(root / "keras"))
