"""Image data for the course: official CIFAR-10, any ImageFolder copy, and synthetic stand-ins.

Every loader returns an `ImageData`: uint8 NHWC images, int64 labels, class names, and an identity
record (what the data is and its hash) that every metrics file stores.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tarfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .paths import (
    CACHE_ENV,
    CIFAR10_SOURCE_ENV,
    OFFLINE_ENV,
    PREFETCH_COMMAND,
    atomic_write,
    cache_dir,
    cached_files,
    env_path,
    is_offline,
    shown,
)
from .progress import progress_bar

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
OFFICIAL_CACHE = "cifar10-official.npz"
# CIFAR-100 (100 fine classes, 600 images each): optional, for notebook 11's CIFAR-FS episodes (Bertinetto et al.)
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_SHA256 = "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"
CIFAR100_ARCHIVE = "cifar-100-python.tar.gz"
CIFAR100_CACHE = "cifar100-official.npz"
OFFICIAL_ARCHIVES = {  # dataset -> (display name, URL, SHA-256, archive file name)
    "cifar10": ("CIFAR-10", CIFAR10_URL, CIFAR10_SHA256, CIFAR10_ARCHIVE),
    "cifar100": ("CIFAR-100", CIFAR100_URL, CIFAR100_SHA256, CIFAR100_ARCHIVE),
}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CIFAR10_PER_CLASS = {"train": 5000, "test": 1000}
SYNTHETIC_CLASSES = ("h-stripes", "v-stripes", "diag-stripes", "antidiag-stripes", "checkers",
                     "rings", "blob", "gradient", "dots", "cross")
VALID_DATASETS = ("auto", "cifar10", "synthetic")
NORMALIZATION = {  # per-channel (mean, std) of the images a backbone was trained on
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "unit": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # plain [0, 1]: keras.applications preprocess inside the model
}
# Bounds against archive and decompression bombs (a small file that expands to GBs and ends in an OOM kill). A CIFAR-10
# copy is 60,000 files of ~2 KB (a batch of the official archive 31 MB) and 184 MB of decoded pixels: far below all.
MAX_FILE_BYTES = 256 << 20  # one image file or archive member, checked (declared size) before it is read
MAX_READ_BYTES = 4 << 30  # all image files of one archive, held in memory until they are decoded
MAX_DECODED_BYTES = 4 << 30  # width x height x 3 of all images of one copy, checked from each header before decoding
# A tar ends with two zero blocks, padded with zeros to a whole record (GNU tar, bsdtar and Python's tarfile all write
# 20 x 512-byte records); more zeros than that after the last member mean members were lost (a zero-filled tail).
TAR_MAX_TRAILER = 2 * tarfile.BLOCKSIZE + tarfile.RECORDSIZE


class DataUnavailableError(RuntimeError):
    """The data cannot be had now (offline, no cache, failed download); the message names the fix."""


class DataFormatError(ValueError):
    """A file or archive is not what it should be; the message names the file and the fix."""


@dataclass
class ImageData:
    """Train and test images (uint8, NHWC) with int64 labels, class names and where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Return the number of classes."""
        return len(self.class_names)

    def __repr__(self) -> str:
        """Show shapes and identity, never the pixels."""
        return (f"ImageData({self.identity.get('dataset')}, train {self.x_train.shape}, test {self.x_test.shape}, "
                f"classes {self.class_names})")


def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Return (mean, std) per channel for `cifar10`, `imagenet` or `unit` normalization."""
    if name not in NORMALIZATION:
        raise ValueError(f"Unknown normalization {name!r}; valid: {', '.join(NORMALIZATION)}")
    return NORMALIZATION[name]


# --------------------------------------------------------------------------------------------- files

def sha256_of(path: Path) -> str:
    """Return the SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_cache(path: Path, data: ImageData) -> None:
    """Store arrays, class names and identity in one uncompressed .npz (fast to load)."""
    atomic_write(path, lambda stream: np.savez(
        stream, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test, y_test=data.y_test,
        class_names=np.array(data.class_names), identity=np.array(json.dumps(data.identity))))


def store_cache(kind: str, name: str, data: ImageData) -> None:
    """Write an optional cache; if that fails (disk full, no permission) say so in one line and go on without it."""
    path = Path(kind) / name
    try:
        path = cache_dir(kind) / name
        save_cache(path, data)
    except OSError as error:
        print(f"Could not write the cache {path} ({error.strerror or error}); going on without it, so the data will "
              f"be decoded again next time. Free some space there, or point {CACHE_ENV} at a folder with room.")


def load_cached(kind: str, name: str) -> ImageData | None:
    """Return the first intact cache of that name (shared data root, then the user cache), or None."""
    return next((data for path in cached_files(kind, name) if (data := load_cache(path)) is not None), None)


def load_cache(path: Path) -> ImageData | None:
    """Read an .npz cache written by `save_cache`; a damaged one is set aside (removed if we may) and None returned."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            data = ImageData(stored["x_train"], stored["y_train"], stored["x_test"], stored["y_test"],
                             [str(name) for name in stored["class_names"]], json.loads(str(stored["identity"])))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        print(f"Cache {path} is damaged ({type(error).__name__}: {error}); rebuilding it from the source.")
        try:
            path.unlink(missing_ok=True)
        except OSError:  # a read-only share: the rebuilt copy goes to the user cache instead
            pass
        return None
    return data


def check_member_name(name: str, archive: Path) -> PurePosixPath:
    """Refuse archive members that would land outside the extraction folder (path traversal); `./x` is read as `x`."""
    member = PurePosixPath(name)  # drops `.` parts: `./train/cat` is `train/cat`, and `./` has no parts at all
    first = member.parts[0] if member.parts else ""
    if member.is_absolute() or ".." in member.parts or name.startswith(("/", "\\")) or ":" in first:
        raise DataFormatError(f"Refusing archive {archive}: member {name!r} points outside the archive folder "
                              "(path traversal). Use an archive from a trusted source.")
    return member


REFETCH = f"Delete it and fetch it again (`{PREFETCH_COMMAND}`), or point {CIFAR10_SOURCE_ENV} at a good copy."
OWN_COPY = ("It is your own copy, so nothing was deleted: copy it again from where it came from (or give the folder "
            f"instead), or unset {CIFAR10_SOURCE_ENV} to use the official download.")


def _corrupt(archive: Path, error: BaseException | str, fix: str) -> DataFormatError:
    """Build the error for an archive that cannot be read to its end."""
    return DataFormatError(f"Archive {archive} is corrupt or truncated ({error}). {fix}")


def _size(count: int) -> str:
    """Write a byte count for people: 500 B, 12 KiB, 6 GiB."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift:
            return f"{count / (1 << shift):.3g} {unit}"
    return f"{count} B"


def check_file_size(size: int, name: str) -> None:
    """Refuse an image file or archive member too large to be one before it is read (an archive bomb)."""
    if size > MAX_FILE_BYTES:
        raise DataFormatError(f"{name} is {_size(size)}, over the {_size(MAX_FILE_BYTES)} limit for one file: an "
                              "archive bomb, or not a data file. Remove that file (from the folder, or from the folder "
                              "the archive was made of, then re-create it), or use a copy from a trusted source.")


def check_member_size(info: tarfile.TarInfo, archive: Path) -> None:
    """Refuse, before reading it, a member that is sparse or declares more bytes than one data file can have."""
    if info.issparse():
        raise DataFormatError(f"Refusing archive {archive}: member {info.name!r} is a sparse file (holes that expand "
                              f"to {_size(info.size)} of zeros), which data never needs. Re-create the archive "
                              "without `tar --sparse` (-S), or remove that member.")
    check_file_size(info.size, f"Member {info.name!r} of archive {archive}")


def read_member(tar: tarfile.TarFile, info: tarfile.TarInfo, archive: Path, fix: str = REFETCH) -> bytes:
    """Read one archive member's bytes after checking its declared size, reporting a truncated archive as such."""
    check_member_size(info, archive)
    try:
        blob = tar.extractfile(info).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise _corrupt(archive, error, fix) from error
    if len(blob) != info.size:
        raise _corrupt(archive, f"member {info.name} has {len(blob)} of its {info.size} bytes", fix)
    return blob


def _check_end_marker(tar: tarfile.TarFile, archive: Path, fix: str, max_trailer: int = TAR_MAX_TRAILER) -> None:
    """Refuse an archive whose members stop before its end: no end marker, data after it, or a zero-filled tail.

    Python's tarfile stops quietly at the first zero block, so a .tar cut short, or one whose tail a preallocating copy
    left as zeros (same size), would otherwise load as a shorter data set. Writers pad the end marker to one record
    (`TAR_MAX_TRAILER`); more zeros than that after the last member mean lost members. For a compressed archive this
    reads the tar stream inside it.
    """
    no_marker = f"no end-of-archive marker after byte {tar.offset}: it was cut short or a header is damaged"
    tar.fileobj.seek(tar.offset)
    zeros = 0  # zero bytes seen so far after the last member
    while chunk := tar.fileobj.read(1 << 16):
        run = len(chunk) - len(chunk.lstrip(b"\0"))  # zeros before the first non-zero byte of this chunk
        if zeros + run > max_trailer:
            raise _corrupt(archive, f"only zeros follow byte {tar.offset}, where its last member ends: far more than "
                                    "a tar writer pads with, so its tail was cut short or zero-filled by a copy that "
                                    "stopped early but kept the full size, or it was written with a large `tar -b` "
                                    "blocking factor", fix)
        if run < len(chunk) and zeros + run < tarfile.BLOCKSIZE:
            raise _corrupt(archive, no_marker, fix)
        if run < len(chunk):
            raise _corrupt(archive, f"non-zero bytes at byte {tar.offset + zeros + run}, after the end-of-archive "
                                    f"marker at byte {tar.offset}: a header is damaged or data was appended", fix)
        zeros += len(chunk)
    if zeros < tarfile.BLOCKSIZE:
        raise _corrupt(archive, no_marker, fix)


Member = tuple[PurePosixPath, tarfile.TarFile, tarfile.TarInfo]


def _check_member_type(info: tarfile.TarInfo, archive: Path) -> None:
    """Refuse links and special files (only plain files and folders are read), saying how to store the file instead."""
    if info.isfile() or info.isdir():
        return
    if info.islnk():
        raise DataFormatError(f"Refusing archive {archive}: member {info.name!r} is a hard link to {info.linkname!r}, "
                              "and only plain files are read. Re-create the archive with `tar --hard-dereference` "
                              "so it stores each file itself.")
    if info.issym():
        raise DataFormatError(f"Refusing archive {archive}: member {info.name!r} is a symbolic link to "
                              f"{info.linkname!r}, and only plain files are read. Re-create the archive with `tar -h` "
                              "(--dereference) so it stores the files that links point to.")
    raise DataFormatError(f"Refusing archive {archive}: member {info.name!r} is a device, FIFO or other special file. "
                          "Re-create the archive from the data folder without it.")


def iter_archive(archive: Path, fix: str = REFETCH, verified: bool = False) -> Iterator[Member]:
    """Yield each file and folder of a tar (names checked), then check it was read to its end; writes nothing.

    `verified` (its bytes match a published hash) lifts the limit on zero padding after the end marker: a tail
    zero-filled by a bad copy cannot match the hash, and how the publisher padded it is theirs to choose.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            for info in tar:
                member = check_member_name(info.name, archive)
                _check_member_type(info, archive)
                if not member.parts and info.isdir():  # `./` from `tar -C folder -czf x.tar.gz .`: the top folder
                    continue
                if not member.parts:
                    raise DataFormatError(f"Refusing archive {archive}: member {info.name!r} has no name. Re-create "
                                          "the archive from the folder.")
                yield member, tar, info
            _check_end_marker(tar, archive, fix, max_trailer=1 << 62 if verified else TAR_MAX_TRAILER)
    except tarfile.ReadError as error:
        if "opened successfully" in str(error) or "empty file" in str(error):  # not a tar archive at all
            raise DataFormatError(f"{archive} is not a tar archive (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz). Give a "
                                  "folder, or a tar of it; a .zip must be unpacked first (`unzip` it and point at the "
                                  f"folder). {fix}") from error
        raise _corrupt(archive, error, fix) from error
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise _corrupt(archive, error, fix) from error


# ----------------------------------------------------------------------------------- official CIFAR-10

class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds only numpy arrays and plain containers, nothing executable."""

    ALLOWED = {("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}  # encode: bytes in protocol 2

    def find_class(self, module: str, name: str) -> Any:
        """Resolve only the numpy array constructors that CIFAR-10 batches use."""
        module = module.replace("numpy.core.", "numpy._core.")
        if (module, name) not in self.ALLOWED:
            raise DataFormatError(f"CIFAR-10 batch refers to {module}.{name}, which a data batch never needs; "
                                  "refusing to unpickle it.")
        return super().find_class(module, name)


def _unpickle_batch(blob: bytes) -> dict[str, Any]:
    """Decode one CIFAR-10 batch (pickled in Python 2) into a dict with str keys."""
    raw = _CifarUnpickler(io.BytesIO(blob), encoding="bytes").load()
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in raw.items()}


def _read_batch(blob: bytes, member: PurePosixPath, archive: Path, what: str) -> dict[str, Any]:
    """Unpickle one batch of an official archive, or name the member and the archive that are not one."""
    try:
        return _unpickle_batch(blob)
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as error:
        if isinstance(error, DataFormatError):
            raise
        raise DataFormatError(f"Member {member} of {archive} is not a {what} batch ({error}). {REFETCH}") from error


def parse_cifar10_archive(archive: Path) -> ImageData:
    """Parse the official python-version archive (verified by hash, or chosen by the user) into arrays."""
    digest = sha256_of(archive)
    blobs: dict[PurePosixPath, bytes] = {}
    # read to its end first: a cut-short archive is named as such
    for member, tar, info in iter_archive(archive, verified=digest == CIFAR10_SHA256):
        if info.isfile() and member.name.startswith(("data_batch_", "test_batch", "batches.meta")):
            blobs[member] = read_member(tar, info, archive)
    batches: dict[str, dict[str, Any]] = {}
    for member in list(blobs):  # popped: bytes and arrays are not held twice
        batches[member.name] = _read_batch(blobs.pop(member), member, archive, "CIFAR-10")
    expected = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    missing = [name for name in expected if name not in batches]
    if missing:
        raise DataFormatError(f"Archive {archive} lacks {missing}; it is not the CIFAR-10 python archive. {REFETCH}")

    def arrays(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Stack batches into NHWC uint8 images and int64 labels."""
        flat = np.concatenate([np.asarray(batches[name]["data"], dtype=np.uint8) for name in names])
        labels = np.concatenate([np.asarray(batches[name]["labels"], dtype=np.int64) for name in names])
        return flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels

    x_train, y_train = arrays(expected[:5])
    x_test, y_test = arrays(["test_batch"])
    class_names = [n.decode() if isinstance(n, bytes) else n for n in batches["batches.meta"]["label_names"]]
    identity = {"dataset": "cifar10", "source": "official python archive", "file": archive.name,
                "sha256": digest, "num_train": len(y_train), "num_test": len(y_test)}
    return ImageData(x_train, y_train, x_test, y_test, class_names, identity)


def parse_cifar100_archive(archive: Path) -> ImageData:
    """Parse the official CIFAR-100 python archive into arrays with its 100 fine labels."""
    digest = sha256_of(archive)
    wanted = ("train", "test", "meta")
    batches: dict[str, dict[str, Any]] = {}
    for member, tar, info in iter_archive(archive, verified=digest == CIFAR100_SHA256):
        if info.isfile() and member.name in wanted:
            batches[member.name] = _read_batch(read_member(tar, info, archive), member, archive, "CIFAR-100")
    missing = [name for name in wanted if name not in batches]
    if missing:
        raise DataFormatError(f"Archive {archive} lacks {missing}; it is not the CIFAR-100 python archive. {REFETCH}")

    def arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
        """One split as NHWC uint8 images and int64 fine labels."""
        flat = np.asarray(batches[name]["data"], dtype=np.uint8)
        return flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), np.asarray(batches[name]["fine_labels"],
                                                                                      dtype=np.int64)

    (x_train, y_train), (x_test, y_test) = arrays("train"), arrays("test")
    class_names = [n.decode() if isinstance(n, bytes) else n for n in batches["meta"]["fine_label_names"]]
    identity = {"dataset": "cifar100", "source": "official python archive", "file": archive.name,
                "sha256": digest, "num_train": len(y_train), "num_test": len(y_test)}
    return ImageData(x_train, y_train, x_test, y_test, class_names, identity)


def _download_help(what: str) -> str:
    """Say how to retry a download or work without one."""
    return (f"Nothing partial was kept. Retry by running the cell again or `{PREFETCH_COMMAND}`. Without a network: "
            f"copy a pre-fetched data/ folder here, set {CIFAR10_SOURCE_ENV} to a local ImageFolder copy of {what} "
            f"(folder or .tar.gz), or use DATASET='synthetic'.")


def fetch_official_archive(dataset: str, url: str | None = None, sha256: str | None = None,
                           folder: Path | None = None) -> Path:
    """Return a hash-checked official archive (`cifar10` or `cifar100`), downloading it once unless offline."""
    import pooch
    import requests

    if dataset not in OFFICIAL_ARCHIVES:
        raise ValueError(f"No official archive for {dataset!r}; known: {', '.join(OFFICIAL_ARCHIVES)}")
    what, default_url, default_sha256, file_name = OFFICIAL_ARCHIVES[dataset]
    url, sha256 = url or default_url, sha256 or default_sha256
    cached = None if folder else next(iter(cached_files(dataset, file_name)), None)
    folder = Path(folder) if folder else (cached.parent if cached else cache_dir(dataset))
    target = folder / file_name
    if is_offline():
        if not target.exists():
            command = PREFETCH_COMMAND if dataset == "cifar10" else f"{PREFETCH_COMMAND} ITEMS={dataset}"
            other_ways = (f", or set {CIFAR10_SOURCE_ENV} to a local ImageFolder copy (folder or .tar.gz), or use "
                          f"DATASET='synthetic'" if dataset == "cifar10" else "")
            raise DataUnavailableError(f"{what} is not cached at {shown(target)} and {OFFLINE_ENV}=1 forbids "
                                       "downloading it. "
                                       f"Run `{command}` on a machine with a network and copy its data/ folder "
                                       f"here{other_ways}.")
        if sha256_of(target) != sha256:
            raise DataFormatError(f"Cached archive {shown(target)} does not match its published SHA-256 (corrupt or "
                                  f"truncated). Delete it, then run `{PREFETCH_COMMAND}` with a network.")
        return target
    try:
        path = pooch.retrieve(url, known_hash=f"sha256:{sha256}", fname=file_name, path=folder, progressbar=True)
    except ValueError as error:  # pooch: hash mismatch; the bad download is already deleted
        raise DataFormatError(f"Downloaded {what} does not match its published SHA-256 ({error}). "
                              + _download_help(what)) from error
    except (requests.RequestException, OSError) as error:
        raise DataUnavailableError(f"Downloading {what} from {url} failed ({error}). " + _download_help(what)
                                   ) from error
    return Path(path)


def fetch_cifar10_archive(url: str | None = None, sha256: str | None = None, folder: Path | None = None) -> Path:
    """Return the hash-checked official CIFAR-10 archive, downloading it once (with progress) unless offline."""
    return fetch_official_archive("cifar10", url or CIFAR10_URL, sha256 or CIFAR10_SHA256, folder)


def load_cifar100() -> ImageData:
    """Load official CIFAR-100 from the compact cache, else from the archive (downloaded once, hash-checked)."""
    data = load_cached("cifar100", CIFAR100_CACHE)
    if data is not None and data.identity.get("sha256") == CIFAR100_SHA256:
        return data
    data = parse_cifar100_archive(fetch_official_archive("cifar100"))
    store_cache("cifar100", CIFAR100_CACHE, data)
    return data


def load_official_cifar10() -> ImageData:
    """Load official CIFAR-10 from the compact cache, else from the archive (downloaded if needed)."""
    data = load_cached("cifar10", OFFICIAL_CACHE)
    if data is not None and data.identity.get("sha256") == CIFAR10_SHA256:
        return data
    archive = fetch_cifar10_archive()
    data = parse_cifar10_archive(archive)
    store_cache("cifar10", OFFICIAL_CACHE, data)
    return data


# --------------------------------------------------------------------------------------- ImageFolder

def _decode_image(blob: bytes, name: str, image_size: int | None, budget: int | None = None,
                  upright: bool = False) -> tuple[np.ndarray, int]:
    """Decode one image file to RGB uint8 (resized to image_size when given); return it and its decoded bytes.

    Its size is read from the header and held against `budget` (the bytes of pixels left) before any pixel is decoded,
    so images that are small files but huge pictures are refused without filling memory. `upright` applies the EXIF
    orientation a phone records instead of turning its pixels.
    """
    try:
        with Image.open(io.BytesIO(blob)) as image:
            cost = image.width * image.height * 3
            if budget is not None and cost > budget:
                raise DataFormatError(
                    f"Image {name} ({image.width}x{image.height}) would take the decoded images over the "
                    f"{_size(MAX_DECODED_BYTES)} limit: the copy is far larger than CIFAR-sized data, or a "
                    "decompression bomb. Resize the images (e.g. with Pillow or ImageMagick `mogrify -resize "
                    "32x32!`), or use fewer.")
            rgb = (ImageOps.exif_transpose(image) if upright else image).convert("RGB")
    except Image.DecompressionBombError as error:
        raise DataFormatError(f"Image {name} is too large to decode safely ({error}); it may be a decompression "
                              "bomb. Remove that file, or shrink it to the size of the others.") from error
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise DataFormatError(f"Cannot read image {name} ({error}). Replace or remove that file.") from error
    if image_size and rgb.size != (image_size, image_size):
        rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(rgb), cost


def read_own_image(path: str | Path, image_size: int = 32) -> np.ndarray:
    """Read one photo of the learner's as the course sees images: RGB uint8, upright, centre-cropped square, resized.

    Phones store a photo as the sensor saw it and record the turn in EXIF, so it is applied first: otherwise a
    portrait photo would be classified lying on its side.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No image at {path}. Set IMAGE_PATH to an existing JPEG or PNG file, or to None "
                                "to use a test image.")
    image = Image.fromarray(_decode_image(path.read_bytes(), str(path), None, upright=True)[0])
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return np.asarray(square.resize((image_size, image_size), Image.Resampling.BICUBIC))


def _is_image(name: str) -> bool:
    """Tell image files from the rest; macOS `._*` resource forks are skipped like .DS_Store."""
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("._")


def _not_one_tree(source: Path, roots: list[str]) -> DataFormatError:
    """Build the error for a copy that holds several train/test trees (or none)."""
    found = f" It holds {len(roots)} trees: {', '.join(sorted(roots)[:4])}; keep one." if len(roots) > 1 else ""
    return DataFormatError(f"{source} is not one ImageFolder copy: expected train/<class>/*.jpg and test/<class>/*.jpg "
                           f"(png, jpg or jpeg) at its top or inside one sub-folder.{found}")


FolderFile = tuple[str, str, Path, os.stat_result]


def _folder_listing(root: Path) -> tuple[list[FolderFile], set[tuple[str, str]]]:
    """List (split, class, path, stat) of every image the loader reads under a split root, plus every class folder.

    Symlinked split folders, class folders and files are followed (the stat is the target's), and this one listing
    both feeds the loader and makes the fingerprint, so the fingerprint is of exactly what is decoded.
    """
    files, class_dirs = [], set()
    for split in ("train", "test"):
        if not (root / split).is_dir():
            continue
        for class_dir in sorted(p for p in (root / split).iterdir() if p.is_dir() and not p.name.startswith("._")
                                and p.name != "__MACOSX"):
            class_dirs.add((split, class_dir.name))
            for file in sorted(class_dir.iterdir()):
                if _is_image(file.name) and file.is_file():
                    files.append((split, class_dir.name, file, file.stat()))
    return files, class_dirs


def _read_file(path: Path, size: int) -> Callable[[], bytes]:
    """Return a reader for one image file that refuses it, unread, if it is too large to be one."""

    def read() -> bytes:
        """Read the file after checking its size."""
        check_file_size(size, f"Image file {path}")
        return path.read_bytes()

    return read


def _folder_files(root: Path) -> tuple[list[tuple[str, str, str, Callable[[], bytes]]], set[tuple[str, str]]]:
    """List (split, class, name, reader) for every image under a folder, plus every class folder seen."""
    files, class_dirs = _folder_listing(root)
    return [(split, name, str(path), _read_file(path, info.st_size)) for split, name, path, info in files], class_dirs


def _archive_files(archive: Path) -> tuple[list[tuple[str, str, str, bytes]], set[tuple[str, str]]]:
    """Read (split, class, name, bytes) for every image in an ImageFolder tar, plus every class folder seen."""
    files, class_dirs, roots, read = [], set(), set(), 0
    members = iter_archive(archive, OWN_COPY)
    for member, tar, info in progress_bar(members, desc=f"reading {archive.name}", unit=" files", mininterval=1.0,
                                          leave=False):
        parts = member.parts
        if "__MACOSX" in parts or parts[-1].startswith("._"):
            continue
        if info.isdir() and len(parts) >= 2 and parts[-2] in ("train", "test"):
            class_dirs.add((parts[-2], parts[-1]))  # an empty class folder exists only as this entry
            roots.add("/".join(parts[:-2]) or ".")
        elif info.isfile() and len(parts) >= 3 and parts[-3] in ("train", "test"):
            class_dirs.add((parts[-3], parts[-2]))
            roots.add("/".join(parts[:-3]) or ".")
            if _is_image(parts[-1]):
                check_member_size(info, archive)
                read += info.size
                if read > MAX_READ_BYTES:
                    raise DataFormatError(f"Archive {archive}: its image files pass the {_size(MAX_READ_BYTES)} "
                                          f"limit at {member}: far more than CIFAR-sized data, or an archive bomb. "
                                          "Use a smaller copy (or fewer images), from a trusted source.")
                files.append((parts[-3], parts[-2], f"{archive}:{member}", read_member(tar, info, archive, OWN_COPY)))
    if len(roots) > 1:
        raise _not_one_tree(archive, sorted(roots))
    return files, class_dirs


def _tree_roots(folder: Path) -> list[Path]:
    """Find every folder, at any depth, holding train/<class>/ or test/<class>/: the rule archives are read by."""
    roots: dict[Path, None] = {}  # ordered set
    seen: set[tuple[int, int]] = set()
    for top, dirs, _ in os.walk(folder, followlinks=True):
        info = os.stat(top)
        dirs[:] = [] if (info.st_dev, info.st_ino) in seen else sorted(
            name for name in dirs if name != "__MACOSX" and not name.startswith("._"))
        seen.add((info.st_dev, info.st_ino))  # a symlink loop is walked once
        here = Path(top)
        if here != folder and here.name in ("train", "test") and dirs:
            roots[here.parent] = None
    return list(roots)


def _split_root(folder: Path) -> Path:
    """Find the one folder holding train/ and test/ (at any depth, as in an archive); refuse none or several."""
    roots = _tree_roots(folder)
    if len(roots) == 1:
        return roots[0]
    raise _not_one_tree(folder, [str(root.relative_to(folder)) for root in roots])


def folder_fingerprint(folder: Path) -> str:
    """Hash what the loader reads from a folder: its class folders and each image's name, size and mtime.

    It is made from the loader's own listing, following symlinked folders as the loader does, so two copies share a
    cache only when they hold the same files, and a file added, removed or changed anywhere the loader looks shows.
    """
    files, class_dirs = _folder_listing(_split_root(folder))
    digest = hashlib.sha256()
    for split, name in sorted(class_dirs):
        digest.update(f"{split}/{name}/\n".encode())
    for split, name, path, info in files:
        digest.update(f"{split}/{name}/{path.name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _check_one_size(source: Path, images: dict[str, list[np.ndarray]], names: dict[str, list[str]]) -> None:
    """Refuse images of different sizes, naming the first odd ones and how to fix them with or without a parameter."""
    shapes = Counter(image.shape[:2] for split in images for image in images[split])
    if len(shapes) < 2:
        return
    (height, width), _ = shapes.most_common(1)[0]
    odd = [f"{name} ({image.shape[1]}x{image.shape[0]})" for split in images
           for image, name in zip(images[split], names[split], strict=True) if image.shape[:2] != (height, width)]
    more = f" and {len(odd) - 3} more" if len(odd) > 3 else ""
    raise DataFormatError(f"{source}: images differ in size: most are {width}x{height}, but {', '.join(odd[:3])}{more} "
                          f"are not. Resize those files to {width}x{height} (e.g. with Pillow's Image.resize, or "
                          f"ImageMagick `mogrify -resize {width}x{height}! FILE`) or remove them; a caller of "
                          "load_image_folder can instead pass image_size=N to resize every image to N x N.")


def read_image_folder(source: Path, image_size: int | None = None) -> ImageData:
    """Decode an ImageFolder tree (`train|test/<class>/*.jpg`), given as a folder or a tar archive."""
    source = Path(source).expanduser()
    if not source.exists():
        raise DataUnavailableError(f"ImageFolder source {source} does not exist; check the path "
                                   f"(or {CIFAR10_SOURCE_ENV}).")
    if source.is_dir():
        files, class_dirs = _folder_files(_split_root(source))
    else:
        files, class_dirs = _archive_files(source)
    class_names = sorted({name for split, name in class_dirs if split == "train"})
    test_names = sorted({name for split, name in class_dirs if split == "test"})
    if not class_names or class_names != test_names:
        raise DataFormatError(f"{source}: train classes {class_names} and test classes {test_names} must be the "
                              "same non-empty set of folders.")
    counts = {(split, name): 0 for split, name in class_dirs}
    for split, name, _, _ in files:
        counts[split, name] += 1
    empty = [f"{split}/{name}" for (split, name), count in sorted(counts.items()) if count == 0]
    if empty:
        raise DataFormatError(f"{source}: class folder(s) {empty} hold no .png/.jpg/.jpeg image. Add images or "
                              "remove the folder.")
    index = {name: label for label, name in enumerate(class_names)}
    images, labels, names = {"train": [], "test": []}, {"train": [], "test": []}, {"train": [], "test": []}
    decoded = 0
    for split, name, path, blob in progress_bar(files, desc="decoding images", unit=" img", mininterval=1.0):
        image, cost = _decode_image(blob if isinstance(blob, bytes) else blob(), path, image_size,
                                    MAX_DECODED_BYTES - decoded)
        decoded += cost
        images[split].append(image)
        labels[split].append(index[name])
        names[split].append(path)
    _check_one_size(source, images, names)
    identity = {"dataset": "imagefolder", "source": str(source.name), "image_size": image_size,
                "num_train": len(labels["train"]), "num_test": len(labels["test"])}
    return ImageData(np.stack(images["train"]), np.array(labels["train"], dtype=np.int64),
                     np.stack(images["test"]), np.array(labels["test"], dtype=np.int64), class_names, identity)


def load_image_folder(source: Path | str, image_size: int | None = None, dataset: str = "imagefolder") -> ImageData:
    """Load an ImageFolder folder or archive through an .npz cache keyed by the source's fingerprint."""
    source = Path(source).expanduser()
    if not source.exists():
        raise DataUnavailableError(f"ImageFolder source {source} does not exist; check the path "
                                   f"(or {CIFAR10_SOURCE_ENV}).")
    fingerprint = folder_fingerprint(source) if source.is_dir() else sha256_of(source)
    cache_name = f"{fingerprint[:24]}-{image_size or 'native'}.npz"  # by content: a renamed copy is found again
    data = load_cached("imagefolder", cache_name)
    if data is not None:
        return data
    data = read_image_folder(source, image_size)
    data.identity.update(dataset=dataset, sha256=fingerprint,
                         fingerprint="sha256 of the archive" if source.is_file() else "sha256 of names, sizes, mtimes")
    store_cache("imagefolder", cache_name, data)
    return data


# ------------------------------------------------------------------------------------------ CIFAR-10

def load_cifar10() -> ImageData:
    """Load CIFAR-10: a local copy named by WORKBOOK_CIFAR10_SOURCE, else the official archive."""
    source = env_path(CIFAR10_SOURCE_ENV)
    if source is None:
        return load_official_cifar10()
    if not source.exists():
        raise DataFormatError(f"{CIFAR10_SOURCE_ENV}={os.environ[CIFAR10_SOURCE_ENV]} names {source}, which does not "
                              "exist. Fix the path (a relative one is read from the folder you started in), or unset "
                              "the variable to use the official download; no data is substituted for a named copy.")
    data = load_image_folder(source, dataset="cifar10")
    if tuple(data.class_names) != CIFAR10_CLASSES:
        raise DataFormatError(f"{CIFAR10_SOURCE_ENV}={source} has classes {data.class_names}, not CIFAR-10's "
                              f"{list(CIFAR10_CLASSES)}. Point it at a CIFAR-10 copy or unset it.")
    data.identity["source"] = f"local ImageFolder copy ({Path(source).name})"
    check_cifar10_counts(data, source)
    return data


def check_cifar10_counts(data: ImageData, source: str | Path) -> None:
    """Refuse a CIFAR-10 copy whose classes are unequal (cut short); say so when it is a balanced subset."""
    per_class = {}
    for split, labels in (("train", data.y_train), ("test", data.y_test)):
        counts = np.bincount(labels, minlength=len(CIFAR10_CLASSES))
        if len(set(counts.tolist())) > 1:
            counted = ", ".join(f"{name} {count}" for name, count in zip(CIFAR10_CLASSES, counts, strict=True))
            raise DataFormatError(f"{CIFAR10_SOURCE_ENV}={source}: the {split} split has unequal images per "
                                  f"class ({counted}); CIFAR-10 has {CIFAR10_PER_CLASS[split]:,} of each. The copy "
                                  "is incomplete (cut short?): copy it again, or unset the variable to use the "
                                  "official download.")
        per_class[split] = int(counts[0])
    if per_class != CIFAR10_PER_CLASS:
        print(f"Note: {CIFAR10_SOURCE_ENV} holds a balanced subset of CIFAR-10 ({per_class['train']} train and "
              f"{per_class['test']} test images per class), not the full 5,000 / 1,000.")


def data_source() -> dict[str, Any]:
    """Identify, cheaply, where CIFAR-10 would come from now (a local copy's hash, or the official archive).

    A sweep compares it with a finished run's, so a result made from other data is never reused.
    """
    path = env_path(CIFAR10_SOURCE_ENV)
    if path is not None:
        try:
            fingerprint = None if not path.exists() else folder_fingerprint(path) if path.is_dir() else sha256_of(path)
        except DataFormatError as error:  # not one ImageFolder tree: loading it says so; a synthetic run need not care
            return {"cifar10": "local copy", "sha256": None, "error": str(error)}
        return {"cifar10": "local copy", "sha256": fingerprint}
    cached = any(cached_files("cifar10", name) for name in (CIFAR10_ARCHIVE, OFFICIAL_CACHE))
    return {"cifar10": "official", "available": cached or not is_offline()}


# ----------------------------------------------------------------------------------------- synthetic

def _patterns(label: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Draw `count` 32x32 grey patterns in [0, 1] of one procedural class, with random phase and scale."""
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    freq = rng.uniform(2.0, 4.0, (count, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (count, 1, 1))
    cx, cy = rng.uniform(0.3, 0.7, (2, count, 1, 1))
    radius = np.hypot(xx - cx, yy - cy)
    wave = lambda u: 0.5 + 0.5 * np.sin(2 * np.pi * freq * u + phase)  # noqa: E731 - local shorthand
    if label == 0:
        return wave(yy + 0 * xx)
    if label == 1:
        return wave(xx + 0 * yy)
    if label == 2:
        return wave((xx + yy) / np.sqrt(2))
    if label == 3:
        return wave((xx - yy) / np.sqrt(2))
    if label == 4:
        return (np.sin(2 * np.pi * freq * xx + phase) * np.sin(2 * np.pi * freq * yy + phase) > 0).astype(float)
    if label == 5:
        return wave(2 * radius)
    if label == 6:
        return np.exp(-radius**2 / (2 * rng.uniform(0.08, 0.18, (count, 1, 1)) ** 2))
    if label == 7:
        angle = rng.uniform(0, 2 * np.pi, (count, 1, 1))
        ramp = (xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle)
        return np.clip(ramp + 0.5, 0, 1)
    if label == 8:
        return ((wave(xx + 0 * yy) * wave(yy + 0 * xx)) > 0.6).astype(float)
    width = rng.uniform(0.002, 0.006, (count, 1, 1))
    return np.clip(np.exp(-((xx - cx) ** 2) / width) + np.exp(-((yy - cy) ** 2) / width), 0, 1)


def _synthetic_split(per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Render `per_class` coloured, noisy images of each of the ten procedural classes."""
    images, labels = [], []
    for label in range(len(SYNTHETIC_CLASSES)):
        pattern = _patterns(label, per_class, rng)[..., None]
        low, high = rng.uniform(0, 1, (2, per_class, 1, 1, 3))
        pixels = low * (1 - pattern) + high * pattern + rng.normal(0, 0.06, (per_class, 32, 32, 3))
        images.append(np.clip(pixels * 255, 0, 255).astype(np.uint8))
        labels.append(np.full(per_class, label, dtype=np.int64))
    order = rng.permutation(per_class * len(SYNTHETIC_CLASSES))
    return np.concatenate(images)[order], np.concatenate(labels)[order]


SYNTHETIC_BANNER = """
##################################################################################
#  SYNTHETIC DATA: procedural 32x32 patterns in 10 classes, NOT CIFAR-10.        #
#  Accuracies from this run say nothing about real images; metrics record        #
#  dataset: synthetic. For CIFAR-10 run `make prefetch` (with a network) or      #
#  set WORKBOOK_CIFAR10_SOURCE to a local copy.                                  #
##################################################################################"""


def make_synthetic(train_per_class: int = 500, test_per_class: int = 100, seed: int = 0) -> ImageData:
    """Make CIFAR-shaped data with 10 learnable procedural classes, for runs with no data at all."""
    if train_per_class < 1 or test_per_class < 1:
        raise ValueError(f"train_per_class and test_per_class must be >= 1, got {train_per_class}, {test_per_class}")
    print(SYNTHETIC_BANNER)
    rng = np.random.default_rng(seed)
    x_train, y_train = _synthetic_split(train_per_class, rng)
    x_test, y_test = _synthetic_split(test_per_class, rng)
    identity = {"dataset": "synthetic", "source": "helpers.data.make_synthetic", "seed": seed,
                "num_train": len(y_train), "num_test": len(y_test)}
    return ImageData(x_train, y_train, x_test, y_test, list(SYNTHETIC_CLASSES), identity)


def load_dataset(name: str = "auto", synthetic_train_per_class: int = 500, synthetic_test_per_class: int = 100,
                 seed: int = 0) -> ImageData:
    """Load `cifar10`, `synthetic`, or `auto` (CIFAR-10 when it can be had, else synthetic, said loudly)."""
    if name not in VALID_DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; valid datasets: {', '.join(VALID_DATASETS)}")
    if name != "synthetic":
        try:
            data = load_cifar10()
            print(f"Loaded {data}")
            return data
        except DataUnavailableError as error:
            if name == "cifar10":
                raise
            print(f"CIFAR-10 is unavailable, so this run falls back to synthetic data.\nReason: {error}")
    return make_synthetic(synthetic_train_per_class, synthetic_test_per_class, seed)
