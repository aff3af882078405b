"""Data layer: the real CIFAR-10 parser on a miniature archive, downloads, caches, ImageFolder, synthetic."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import sha256_file, write_image_folder, write_tar
from PIL import Image

from helpers import data


def test_parser_reads_canonical_batches_into_nhwc(mini_cifar):
    archive, batches = mini_cifar
    parsed = data.parse_cifar10_archive(archive)
    assert parsed.x_train.shape == (40, 32, 32, 3) and parsed.x_train.dtype == np.uint8
    assert parsed.x_test.shape == (6, 32, 32, 3)
    assert parsed.y_train.dtype == np.int64
    assert parsed.class_names == list(data.CIFAR10_CLASSES)
    first = batches["data_batch_1"][b"data"][0]
    # The official layout is 1024 red, then 1024 green, then 1024 blue values, row by row.
    assert parsed.x_train[0, 0, 1, 0] == first[1]
    assert parsed.x_train[0, 0, 0, 1] == first[1024]
    assert parsed.x_train[0, 31, 31, 2] == first[3071]
    assert parsed.y_train[:8].tolist() == batches["data_batch_1"][b"labels"]
    assert parsed.identity["sha256"] == sha256_file(archive)


def test_download_checks_hash_caches_and_never_downloads_twice(mini_cifar, serve, data_root, monkeypatch):
    monkeypatch.delenv("WORKBOOK_OFFLINE")
    archive, _ = mini_cifar
    url, requests = serve(archive.read_bytes())
    folder = data_root / "cifar10"
    first = data.fetch_cifar10_archive(url, sha256_file(archive), folder)
    second = data.fetch_cifar10_archive(url, sha256_file(archive), folder)
    assert first == second and first.read_bytes() == archive.read_bytes()
    assert len(requests) == 1


def test_hash_mismatch_keeps_nothing_and_says_how_to_retry(mini_cifar, serve, data_root, monkeypatch):
    monkeypatch.delenv("WORKBOOK_OFFLINE")
    archive, _ = mini_cifar
    url, _ = serve(archive.read_bytes())
    with pytest.raises(data.DataFormatError, match="SHA-256.*Retry"):
        data.fetch_cifar10_archive(url, "0" * 64, data_root / "cifar10")
    assert list((data_root / "cifar10").iterdir()) == []


def test_interrupted_download_leaves_no_partial_file(mini_cifar, serve, data_root, monkeypatch):
    monkeypatch.delenv("WORKBOOK_OFFLINE")
    archive, _ = mini_cifar
    url, _ = serve(archive.read_bytes(), truncate=True)
    with pytest.raises(data.DataUnavailableError, match="Nothing partial was kept. Retry"):
        data.fetch_cifar10_archive(url, sha256_file(archive), data_root / "cifar10")
    assert list((data_root / "cifar10").iterdir()) == []


def test_offline_without_cache_names_the_command_and_variable(data_root):
    with pytest.raises(data.DataUnavailableError, match="make prefetch.*WORKBOOK_CIFAR10_SOURCE"):
        data.load_official_cifar10()


def test_offline_uses_a_verified_cached_archive_and_builds_the_npz(mini_cifar, data_root, monkeypatch):
    archive, _ = mini_cifar
    (data_root / "cifar10").mkdir(parents=True)
    (data_root / "cifar10" / data.CIFAR10_ARCHIVE).write_bytes(archive.read_bytes())
    monkeypatch.setattr(data, "CIFAR10_SHA256", sha256_file(archive))
    loaded = data.load_official_cifar10()
    assert loaded.x_train.shape == (40, 32, 32, 3)
    assert (data_root / "cifar10" / "cifar10-official.npz").exists()
    monkeypatch.setattr(data, "parse_cifar10_archive", lambda _: pytest.fail("parsed again despite the cache"))
    again = data.load_official_cifar10()
    np.testing.assert_array_equal(again.x_train, loaded.x_train)


def test_corrupt_cached_archive_offline_is_refused(mini_cifar, data_root):
    (data_root / "cifar10").mkdir(parents=True)
    (data_root / "cifar10" / data.CIFAR10_ARCHIVE).write_bytes(b"not the archive")
    with pytest.raises(data.DataFormatError, match="does not match its published SHA-256.*Delete it"):
        data.fetch_cifar10_archive()


def test_truncated_archive_is_reported_as_corrupt(mini_cifar, tmp_path):
    archive, _ = mini_cifar
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(data.DataFormatError, match="corrupt or truncated"):
        data.parse_cifar10_archive(truncated)


@pytest.mark.parametrize("member", ["../escape.txt", "/etc/evil", "cifar-10-batches-py/../../escape"])
def test_path_traversal_members_are_refused(tmp_path, member):
    archive = write_tar(tmp_path / "evil.tar.gz", {member: b"x"})
    with pytest.raises(data.DataFormatError, match="path traversal"):
        data.parse_cifar10_archive(archive)
    assert not (tmp_path.parent / "escape.txt").exists()


def test_links_in_archives_are_refused(tmp_path):
    archive = tmp_path / "link.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("train/cat/link.png")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(data.DataFormatError, match=r"link\.tar\.gz.*symbolic link.*tar -h"):
        data.read_image_folder(archive)


class _Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_batches_that_reference_code_are_not_unpickled(mini_cifar, tmp_path, capsys):
    archive, batches = mini_cifar
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    members["cifar-10-batches-py/data_batch_1"] = pickle.dumps({b"data": _Exploit(), b"labels": []}, protocol=2)
    evil = write_tar(tmp_path / "evil.tar.gz", members)
    with pytest.raises(data.DataFormatError, match="refusing to unpickle"):
        data.parse_cifar10_archive(evil)
    assert "must never run" not in capsys.readouterr().out


def test_missing_batches_are_named(tmp_path):
    archive = write_tar(tmp_path / "partial.tar.gz", {"cifar-10-batches-py/readme.html": b""})
    with pytest.raises(data.DataFormatError, match="lacks .*data_batch_1"):
        data.parse_cifar10_archive(archive)


# ----------------------------------------------------------------------------------------- ImageFolder

def _tar_folder(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="copy")
    return archive


def test_image_folder_reads_folders_and_archives_the_same(tmp_path, data_root):
    folder = write_image_folder(tmp_path / "images", suffix=".png")
    from_folder = data.read_image_folder(folder)
    from_archive = data.read_image_folder(_tar_folder(folder, tmp_path / "images.tar.gz"))
    assert from_folder.class_names == ["cat", "dog", "frog"]
    assert from_folder.x_train.shape == (9, 32, 32, 3)
    np.testing.assert_array_equal(from_folder.x_train, from_archive.x_train)
    np.testing.assert_array_equal(from_folder.y_test, from_archive.y_test)
    assert from_folder.x_train[from_folder.y_train == 2][0, 0, 0, 0] == 120  # colour encodes the class


def test_image_folder_resizes_when_asked(tmp_path):
    folder = write_image_folder(tmp_path / "images", size=40, suffix=".jpg")
    assert data.read_image_folder(folder, image_size=32).x_train.shape == (9, 32, 32, 3)


def test_image_folder_cache_is_reused_and_rebuilt_when_damaged(tmp_path, data_root, monkeypatch):
    folder = write_image_folder(tmp_path / "images")
    first = data.load_image_folder(folder)
    [cache] = list((data_root / "imagefolder").glob("*.npz"))
    real_reader = data.read_image_folder
    monkeypatch.setattr(data, "read_image_folder", lambda *a: pytest.fail("decoded again despite the cache"))
    np.testing.assert_array_equal(data.load_image_folder(folder).x_train, first.x_train)
    cache.write_bytes(b"damaged")
    monkeypatch.setattr(data, "read_image_folder", real_reader)
    np.testing.assert_array_equal(data.load_image_folder(folder).x_train, first.x_train)


def test_unreadable_image_is_named(tmp_path):
    folder = write_image_folder(tmp_path / "images")
    (folder / "train" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(data.DataFormatError, match=r"broken\.jpg"):
        data.read_image_folder(folder)


def test_empty_class_folder_is_named(tmp_path):
    folder = write_image_folder(tmp_path / "images")
    (folder / "train" / "zebra").mkdir()
    (folder / "test" / "zebra").mkdir()
    with pytest.raises(data.DataFormatError, match="train/zebra"):
        data.read_image_folder(folder)


def test_empty_class_folder_in_an_archive_is_named(tmp_path):
    folder = write_image_folder(tmp_path / "images")
    (folder / "train" / "zebra").mkdir()
    (folder / "test" / "zebra").mkdir()
    with pytest.raises(data.DataFormatError, match="zebra"):
        data.read_image_folder(_tar_folder(folder, tmp_path / "images.tar.gz"))


def test_mixed_image_sizes_ask_for_image_size(tmp_path):
    folder = write_image_folder(tmp_path / "images")
    write_image_folder(tmp_path / "images", classes=("cat",), size=48, per_class=1, suffix=".jpg")
    with pytest.raises(data.DataFormatError, match="image_size"):
        data.read_image_folder(folder)


def test_train_and_test_classes_must_match(tmp_path):
    folder = write_image_folder(tmp_path / "images")
    write_image_folder(tmp_path / "other", classes=("owl",))
    (tmp_path / "other" / "train" / "owl").rename(folder / "train" / "owl")
    with pytest.raises(data.DataFormatError, match="same non-empty set"):
        data.read_image_folder(folder)


def test_not_an_image_folder_says_what_layout_is_expected(tmp_path):
    (tmp_path / "flat").mkdir()
    with pytest.raises(data.DataFormatError, match="train/<class>"):
        data.read_image_folder(tmp_path / "flat")


def test_cifar10_source_must_have_cifar10_classes(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("WORKBOOK_CIFAR10_SOURCE", str(write_image_folder(tmp_path / "images")))
    with pytest.raises(data.DataFormatError, match="not CIFAR-10's"):
        data.load_cifar10()


def test_cifar10_source_folder_is_loaded_as_cifar10(tmp_path, data_root, monkeypatch):
    names = tuple(data.CIFAR10_CLASSES)
    monkeypatch.setenv("WORKBOOK_CIFAR10_SOURCE", str(write_image_folder(tmp_path / "c", classes=names, per_class=1)))
    loaded = data.load_cifar10()
    assert loaded.identity["dataset"] == "cifar10" and loaded.num_classes == 10
    assert len(loaded.identity["sha256"]) == 64


def test_missing_source_path_is_reported(tmp_path, data_root):
    with pytest.raises(data.DataUnavailableError, match="does not exist"):
        data.load_image_folder(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------- synthetic

def test_synthetic_is_deterministic_balanced_and_loud(capsys):
    first = data.make_synthetic(12, 3, seed=5)
    second = data.make_synthetic(12, 3, seed=5)
    np.testing.assert_array_equal(first.x_train, second.x_train)
    assert first.x_train.shape == (120, 32, 32, 3) and first.x_train.dtype == np.uint8
    assert np.bincount(first.y_train).tolist() == [12] * 10
    assert first.identity["dataset"] == "synthetic"
    assert "SYNTHETIC DATA" in capsys.readouterr().out
    assert not np.array_equal(data.make_synthetic(12, 3, seed=6).x_train, first.x_train)


def test_synthetic_rejects_empty_sizes():
    with pytest.raises(ValueError, match=">= 1"):
        data.make_synthetic(0, 3)


def test_auto_falls_back_to_synthetic_offline_and_cifar10_does_not(data_root, capsys):
    loaded = data.load_dataset("auto", 5, 2)
    assert loaded.identity["dataset"] == "synthetic"
    assert "falls back to synthetic" in capsys.readouterr().out
    with pytest.raises(data.DataUnavailableError):
        data.load_dataset("cifar10")


def test_unknown_dataset_and_normalization_list_valid_names():
    with pytest.raises(ValueError, match="auto, cifar10, synthetic"):
        data.load_dataset("mnist")
    with pytest.raises(ValueError, match="cifar10, imagenet, unit"):
        data.normalization("coco")


def test_synthetic_classes_are_learnable_by_a_small_cnn():
    torch = pytest.importorskip("torch")
    from helpers import torch_data

    torch.manual_seed(0)
    synthetic = data.make_synthetic(150, 30, seed=0)
    block = lambda c_in, c_out: [torch.nn.Conv2d(c_in, c_out, 3, padding=1), torch.nn.BatchNorm2d(c_out),
                                 torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
    model = torch.nn.Sequential(*block(3, 16), *block(16, 32), *block(32, 32), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(6):
        model.train()
        for images, labels in torch_data.make_loader(synthetic.x_train, synthetic.y_train, train=False, batch_size=64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        images, labels = next(iter(torch_data.make_loader(synthetic.x_test, synthetic.y_test, False, batch_size=300)))
        accuracy = (model(images).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.4  # chance is 0.1


def test_cache_writes_are_atomic(tmp_path, monkeypatch):
    synthetic = data.make_synthetic(2, 1)
    target = tmp_path / "cache.npz"
    monkeypatch.setattr(data.np, "savez", lambda stream, **kw: (stream.write(b"half"), 1 / 0))
    with pytest.raises(ZeroDivisionError):
        data.save_cache(target, synthetic)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    data.save_cache(target, synthetic)
    np.testing.assert_array_equal(data.load_cache(target).x_test, synthetic.x_test)


def test_own_image_is_cropped_square_and_shrunk_and_bad_paths_say_what_to_do(tmp_path):
    wide = np.zeros((40, 80, 3), dtype=np.uint8)
    wide[:, 20:60] = 255  # a white centre square on black sides: the crop keeps only the white part
    Image.fromarray(wide).save(tmp_path / "wide.png")
    picture = data.read_own_image(tmp_path / "wide.png")
    assert picture.shape == (32, 32, 3) and picture.dtype == np.uint8 and picture.min() > 200
    with pytest.raises(FileNotFoundError, match="IMAGE_PATH"):
        data.read_own_image(tmp_path / "missing.jpg")
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(data.DataFormatError, match="Cannot read image"):
        data.read_own_image(tmp_path / "notes.jpg")


def mini_cifar100(folder: Path) -> Path:
    """Write a miniature CIFAR-100 python archive in the canonical format (fine and coarse labels, a meta file)."""
    rng = np.random.default_rng(1)

    def split(count: int) -> bytes:
        """One pickled split: (count, 3072) uint8 pixels and fine labels 0-99."""
        return pickle.dumps({b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                             b"fine_labels": [int(v) for v in rng.integers(0, 100, count)],
                             b"coarse_labels": [0] * count}, protocol=2)

    names = [f"class_{i}".encode() for i in range(100)]
    return write_tar(folder / "cifar-100-python.tar.gz", {
        "cifar-100-python/train": split(12), "cifar-100-python/test": split(5),
        "cifar-100-python/meta": pickle.dumps({b"fine_label_names": names, b"coarse_label_names": []}, protocol=2)})


def test_cifar100_is_parsed_downloaded_once_hash_checked_and_offline_capable(tmp_path, serve, data_root, monkeypatch):
    archive = mini_cifar100(tmp_path)
    parsed = data.parse_cifar100_archive(archive)
    assert parsed.x_train.shape == (12, 32, 32, 3) and parsed.x_test.shape == (5, 32, 32, 3)
    assert len(parsed.class_names) == 100 and parsed.identity["dataset"] == "cifar100"
    with pytest.raises(data.DataUnavailableError, match="make prefetch ITEMS=cifar100"):
        data.fetch_official_archive("cifar100", folder=data_root / "cifar100")  # offline, nothing cached
    monkeypatch.delenv("WORKBOOK_OFFLINE")
    url, requests = serve(archive.read_bytes())
    with pytest.raises(data.DataFormatError, match="CIFAR-100 does not match its published SHA-256"):
        data.fetch_official_archive("cifar100", url, "0" * 64, data_root / "cifar100")
    fetched = data.fetch_official_archive("cifar100", url, sha256_file(archive), data_root / "cifar100")
    again = data.fetch_official_archive("cifar100", url, sha256_file(archive), data_root / "cifar100")
    assert fetched == again and fetched.read_bytes() == archive.read_bytes() and len(requests) == 2
    broken = write_tar(tmp_path / "broken.tar.gz", {"cifar-100-python/train": b"not a pickle"})
    with pytest.raises(data.DataFormatError, match="not a CIFAR-100 batch"):
        data.parse_cifar100_archive(broken)
    with pytest.raises(ValueError, match="known: cifar10, cifar100"):
        data.fetch_official_archive("cifar1000")
