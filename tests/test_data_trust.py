"""Data the loader could get silently wrong: symlinked copies, zero-filled or bomb archives, `./` members, a full
disk for the cache, hard links, odd image sizes, rotated phone photos, and trees at two depths."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_image_folder
from PIL import Image

from helpers import data

needs_gnu_tar = pytest.mark.skipif(shutil.which("tar") is None, reason="needs the tar command")


def _noise_folder(root: Path, per_class: int = 4) -> Path:
    """Write an ImageFolder of incompressible 64 x 64 noise PNGs, so a tar of it is a few hundred KB."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("cat", "dog", "frog"):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    return root


def _zero_tail(blob: bytes, fraction: float = 0.1) -> bytes:
    """Overwrite the last `fraction` of the bytes with zeros, keeping the size (a preallocating copy that stopped)."""
    keep = int(len(blob) * (1 - fraction))
    return blob[:keep] + bytes(len(blob) - keep)


def _tar_with(tool: str, folder: Path, archive: Path) -> Path:
    """Pack a folder under `copy/` with GNU tar or Python's tarfile, compressed when the name ends in .gz."""
    gz = archive.name.endswith(".gz")
    if tool == "gnu":
        subprocess.run(["tar", "-C", str(folder.parent), f"-c{'z' if gz else ''}f", str(archive),
                        "--transform", f"s,^{folder.name},copy,", folder.name], check=True)
    else:
        with tarfile.open(archive, "w:gz" if gz else "w") as tar:
            tar.add(folder, arcname="copy")
    return archive


# -------------------------------------------------------------------------------------- symlinked folders (1)

def _symlinked_copy(real: Path, copy: Path, level: str) -> Path:
    """Make `copy` an ImageFolder whose split folders (or class folders) are symlinks into `real`."""
    for split in ("train", "test"):
        if level == "split":
            copy.mkdir(parents=True, exist_ok=True)
            (copy / split).symlink_to(real / split, target_is_directory=True)
            continue
        (copy / split).mkdir(parents=True)
        for class_dir in sorted((real / split).iterdir()):
            (copy / split / class_dir.name).symlink_to(class_dir, target_is_directory=True)
    return copy


@pytest.mark.parametrize("level", ["split", "class"])
def test_copies_made_of_symlinked_folders_get_their_own_fingerprint_and_cache(tmp_path, data_root, level):
    first = _symlinked_copy(write_image_folder(tmp_path / "real1"), tmp_path / "copy1", level)
    second = _symlinked_copy(write_image_folder(tmp_path / "real2", classes=("owl", "bat", "elk"), per_class=2),
                             tmp_path / "copy2", level)
    assert data.folder_fingerprint(first) != data.folder_fingerprint(second)
    assert data.folder_fingerprint(first) != data.folder_fingerprint(tmp_path / "real2")
    loaded_first, loaded_second = data.load_image_folder(first), data.load_image_folder(second)
    assert loaded_first.class_names == ["cat", "dog", "frog"] and loaded_second.class_names == ["bat", "elk", "owl"]
    assert loaded_second.x_train.shape == (6, 32, 32, 3)


def test_removing_an_image_through_a_symlinked_folder_changes_the_fingerprint(tmp_path, data_root):
    copy = _symlinked_copy(write_image_folder(tmp_path / "real"), tmp_path / "copy", "class")
    before = data.folder_fingerprint(copy)
    (copy / "train" / "cat" / "0000.png").unlink()
    assert data.folder_fingerprint(copy) != before
    assert data.load_image_folder(copy).x_train.shape == (8, 32, 32, 3)


def test_the_fingerprint_ignores_files_the_loader_does_not_read(tmp_path):
    folder = write_image_folder(tmp_path / "images")
    before = data.folder_fingerprint(folder)
    (folder / "notes.txt").write_text("not read")
    (folder / "train" / "cat" / "Thumbs.db").write_bytes(b"not read")
    assert data.folder_fingerprint(folder) == before


# ---------------------------------------------------------------------------------------- zero-filled tails (5)

@needs_gnu_tar
@pytest.mark.parametrize("tool", ["gnu", "python"])
@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_complete_tars_from_gnu_tar_and_tarfile_load(tmp_path, data_root, tool, suffix):
    archive = _tar_with(tool, _noise_folder(tmp_path / "images"), tmp_path / f"images{suffix}")
    assert data.read_image_folder(archive).x_train.shape == (12, 64, 64, 3)


@needs_gnu_tar
@pytest.mark.parametrize("tool", ["gnu", "python"])
@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_a_tar_whose_tail_is_zero_filled_is_refused_not_loaded_short(tmp_path, data_root, tool, suffix):
    archive = _tar_with(tool, _noise_folder(tmp_path / "images"), tmp_path / f"images{suffix}")
    if suffix == ".tar":
        archive.write_bytes(_zero_tail(archive.read_bytes()))
    else:  # what matters is the tar stream inside the gzip
        archive.write_bytes(gzip.compress(_zero_tail(gzip.decompress(archive.read_bytes()))))
    with pytest.raises(data.DataFormatError) as caught:
        data.load_image_folder(archive)
    message = str(caught.value)
    assert str(archive) in message and "zero-filled" in message and "copy it again" in message
    assert not list((data_root / "imagefolder").glob("*.npz"))


def test_an_official_archive_with_a_zero_filled_tail_is_refused(mini_cifar, tmp_path):
    archive, _ = mini_cifar
    damaged = tmp_path / "damaged.tar.gz"
    # a third: the miniature archive's members are 25 KB, and the zeros must start before the last batch's header
    damaged.write_bytes(gzip.compress(_zero_tail(gzip.decompress(archive.read_bytes()), 0.3)))
    with pytest.raises(data.DataFormatError, match="zero-filled.*Delete it and fetch it again"):
        data.parse_cifar10_archive(damaged)


def test_data_appended_after_the_end_marker_is_refused(tmp_path):
    archive = _tar_with("python", write_image_folder(tmp_path / "images"), tmp_path / "images.tar")
    archive.write_bytes(archive.read_bytes() + b"\x01" * 512)
    with pytest.raises(data.DataFormatError, match="corrupt or truncated.*after the end-of-archive marker"):
        data.read_image_folder(archive)


# ------------------------------------------------------------------------------------------- `./` members (7)

@needs_gnu_tar
def test_a_tar_made_with_dot_as_its_top_folder_loads(tmp_path):
    folder = write_image_folder(tmp_path / "cifar10-jpg", suffix=".jpg")
    archive = tmp_path / "c.tar.gz"
    subprocess.run(["tar", "-C", str(folder), "-czf", str(archive), "."], check=True)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert {".", "./"} & set(names) and "./train/cat/0000.jpg" in names  # `./` is stored as the archive's top folder
    loaded = data.read_image_folder(archive)
    assert loaded.class_names == ["cat", "dog", "frog"] and loaded.x_train.shape == (9, 32, 32, 3)


# ------------------------------------------------------------------------------------------ archive bombs (10)

def _gz_with_member(tmp_path: Path, info: tarfile.TarInfo, payload: bytes) -> Path:
    """Write a .tar.gz holding one header and a short payload, whatever size the header declares."""
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(gzip.compress(info.tobuf(tarfile.GNU_FORMAT) + payload))
    return archive


def test_a_member_declaring_gigabytes_is_refused_before_it_is_read(tmp_path):
    info = tarfile.TarInfo("copy/train/cat/0000.png")
    info.size = 6 << 30
    archive = _gz_with_member(tmp_path, info, b"\x89PNG" + bytes(508))
    started = time.perf_counter()
    with pytest.raises(data.DataFormatError, match=r"copy/train/cat/0000\.png.*6 GiB.*256 MiB"):
        data.read_image_folder(archive)
    assert time.perf_counter() - started < 5


@needs_gnu_tar
def test_a_sparse_member_is_refused(tmp_path):
    folder = write_image_folder(tmp_path / "images")
    with open(folder / "train" / "cat" / "sparse.png", "wb") as stream:
        stream.write(b"\x89PNG")
        stream.truncate(4 << 20)  # a hole: expands to 4 MiB of zeros, stored in a few bytes
    archive = tmp_path / "sparse.tar"
    subprocess.run(["tar", "-S", "-C", str(tmp_path), "-cf", str(archive), "images"], check=True)
    with tarfile.open(archive) as tar:
        assert tar.getmember("images/train/cat/sparse.png").issparse()
    with pytest.raises(data.DataFormatError, match=r"sparse\.png.*sparse"):
        data.read_image_folder(archive)


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_an_image_file_over_the_size_limit_is_named(tmp_path, monkeypatch, kind):
    folder = write_image_folder(tmp_path / "images")
    (folder / "train" / "dog" / "huge.png").write_bytes(b"\x89PNG" + bytes(4000))
    source = folder if kind == "folder" else _tar_with("python", folder, tmp_path / "images.tar.gz")
    monkeypatch.setattr(data, "MAX_FILE_BYTES", 2048)
    with pytest.raises(data.DataFormatError, match=r"huge\.png.*over the 2 KiB limit"):
        data.read_image_folder(source)


def test_the_bytes_read_from_an_archive_are_bounded_in_total(tmp_path, monkeypatch):
    archive = _tar_with("python", write_image_folder(tmp_path / "images"), tmp_path / "images.tar.gz")
    monkeypatch.setattr(data, "MAX_READ_BYTES", 500)
    with pytest.raises(data.DataFormatError, match=f"{archive.name}.*500 B limit"):
        data.read_image_folder(archive)


def test_decoded_pixels_are_bounded_in_total_before_decoding(tmp_path, monkeypatch):
    folder = write_image_folder(tmp_path / "images")
    monkeypatch.setattr(data, "MAX_DECODED_BYTES", 4 * 32 * 32 * 3)
    converted, convert = [], Image.Image.convert
    monkeypatch.setattr(Image.Image, "convert", lambda image, *a, **k: converted.append(1) or convert(image, *a, **k))
    with pytest.raises(data.DataFormatError, match=r"\.png \(32x32\).*12 KiB limit"):
        data.read_image_folder(folder)
    assert len(converted) == 4  # the fifth image was refused from its header, not decoded


# ------------------------------------------------------------------------------------- a full disk for the cache (13)

def _disk_full(*args: object, **kwargs: object) -> None:
    raise OSError(28, "No space left on device")


def test_a_full_disk_for_the_image_cache_is_said_and_loading_goes_on(tmp_path, data_root, monkeypatch, capsys):
    folder = write_image_folder(tmp_path / "images")
    monkeypatch.setattr(data, "atomic_write", _disk_full)
    assert data.load_image_folder(folder).x_train.shape == (9, 32, 32, 3)
    out = capsys.readouterr().out
    assert "No space left on device" in out and str(data_root / "imagefolder") in out and "decoded again" in out


def test_a_full_disk_for_the_official_cache_is_said_and_loading_goes_on(mini_cifar, data_root, monkeypatch, capsys):
    archive, _ = mini_cifar
    (data_root / "cifar10").mkdir(parents=True)
    shutil.copy(archive, data_root / "cifar10" / data.CIFAR10_ARCHIVE)
    monkeypatch.setattr(data, "CIFAR10_SHA256", data.sha256_of(archive))
    monkeypatch.setattr(data, "atomic_write", _disk_full)
    assert data.load_official_cifar10().x_train.shape == (40, 32, 32, 3)
    out = capsys.readouterr().out
    assert "No space left on device" in out and data.OFFICIAL_CACHE in out and "decoded again" in out


# ------------------------------------------------------------------------------------------------ minor ones

def test_a_hard_link_in_a_tar_names_the_tar_option_that_stores_the_file(tmp_path):
    folder = write_image_folder(tmp_path / "images")
    os.link(folder / "train" / "cat" / "0000.png", folder / "train" / "cat" / "0009.png")
    archive = _tar_with("python", folder, tmp_path / "images.tar.gz")
    with pytest.raises(data.DataFormatError, match=r"images\.tar\.gz.*hard link.*tar --hard-dereference"):
        data.read_image_folder(archive)


def test_an_image_of_another_size_is_named_with_advice_that_needs_no_parameter(tmp_path):
    folder = write_image_folder(tmp_path / "images")
    Image.new("RGB", (400, 300)).save(folder / "train" / "dog" / "phone.jpg")
    with pytest.raises(data.DataFormatError) as caught:
        data.read_image_folder(folder)
    message = str(caught.value)
    assert "phone.jpg (400x300)" in message and "32x32" in message and "mogrify" in message
    assert "image_size" in message


def test_an_exif_rotated_photo_is_read_upright(tmp_path):
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[:32] = 255  # stored with the white half on top; orientation 6 says: turn it 90 degrees clockwise
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    picture = data.read_own_image(tmp_path / "phone.jpg").astype(int)
    assert picture[:, -8:].mean() > 200 and picture[:, :8].mean() < 50  # shown as taken: white on the right


def test_two_trees_at_different_depths_are_refused_in_a_folder_as_in_a_tar(tmp_path):
    both = tmp_path / "both"
    write_image_folder(both / "a")
    write_image_folder(both / "b" / "c")
    archive = tmp_path / "both.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(both, arcname="both")
    messages = []
    for source in (both, archive):
        with pytest.raises(data.DataFormatError, match="not one ImageFolder copy.*2 trees") as caught:
            data.read_image_folder(source)
        messages.append(str(caught.value).split("It holds", 1)[1])
    assert "a, " in messages[0] and "b/c" in messages[0] and "both/a" in messages[1] and "both/b/c" in messages[1]


def test_a_tree_one_folder_down_still_loads(tmp_path):
    write_image_folder(tmp_path / "outer" / "copy")
    (tmp_path / "outer" / "__MACOSX" / "copy" / "train" / "cat").mkdir(parents=True)
    assert data.read_image_folder(tmp_path / "outer").x_train.shape == (9, 32, 32, 3)



def test_the_sweep_data_source_tells_symlinked_copies_apart_and_survives_a_broken_one(tmp_path, monkeypatch):
    first = _symlinked_copy(write_image_folder(tmp_path / "real1"), tmp_path / "copy1", "class")
    second = _symlinked_copy(write_image_folder(tmp_path / "real2", per_class=2), tmp_path / "copy2", "class")
    sources = []
    for source in (first, second, tmp_path):  # tmp_path holds four trees: loading it is refused, naming them
        monkeypatch.setenv("WORKBOOK_CIFAR10_SOURCE", str(source))
        sources.append(data.data_source())
    assert sources[0]["sha256"] != sources[1]["sha256"] and sources[2]["sha256"] is None
    assert "not one ImageFolder copy" in sources[2]["error"]


# ------------------------------------------------------------------------------------ named sources and padding

def test_a_named_copy_that_is_missing_is_an_error_never_synthetic_data(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("PWD", str(tmp_path))
    monkeypatch.setenv("WORKBOOK_CIFAR10_SOURCE", "data/x.tar.gz")  # relative, from the launch folder
    with pytest.raises(data.DataFormatError, match=f"names {tmp_path / 'data' / 'x.tar.gz'}, which does not exist"):
        data.load_dataset("auto")


def test_a_relative_named_copy_is_read_from_the_launch_folder(tmp_path, data_root, monkeypatch):
    write_image_folder(tmp_path / "copy", classes=data.CIFAR10_CLASSES, per_class=2)
    monkeypatch.setenv("PWD", str(tmp_path))
    monkeypatch.setenv("WORKBOOK_CIFAR10_SOURCE", "copy")
    monkeypatch.chdir(tmp_path.parent)  # a kernel runs elsewhere (notebooks/)
    assert data.load_dataset("auto").identity["dataset"] == "cifar10"
    assert data.data_source()["sha256"] == data.folder_fingerprint(tmp_path / "copy")


def test_a_hash_verified_official_archive_may_be_padded_as_its_publisher_chose(tmp_path, mini_cifar, monkeypatch):
    archive, _ = mini_cifar
    with gzip.open(archive) as stream:
        inner = stream.read()
    padded = tmp_path / "padded" / archive.name
    padded.parent.mkdir()
    padded.write_bytes(gzip.compress(inner + bytes(64 * 1024)))  # far more zeros than GNU tar pads with
    with pytest.raises(data.DataFormatError, match="zero-filled"):
        data.parse_cifar10_archive(padded)
    monkeypatch.setattr(data, "CIFAR10_SHA256", hashlib.sha256(padded.read_bytes()).hexdigest())
    assert data.parse_cifar10_archive(padded).x_train.shape == (40, 32, 32, 3)
