"""The sounds-fewshot data: the "sounds" asset group (real Debian package), the decoded clip set,
seeded episodes, and the DS-CNN with a ProtoNet head through the real converter and LiteRT."""
from __future__ import annotations

import pathlib
import shutil

import numpy as np
import pytest

from tflite_fg import assets, data, sounds
from tflite_fg.assets import AssetError

EXPECTED_COUNTS = {"ambi": 11, "bass": 9, "bd": 13, "drum": 20, "elec": 25, "glitch": 8, "loop": 17,
                   "mehackit": 11, "perc": 10, "tabla": 26}


@pytest.fixture(scope="module")
def sounds_cache(cache_dir) -> pathlib.Path:
    """The session cache with the optional "sounds" group fetched (apt-get download on first use)."""
    return assets.ensure_assets(cache_dir, which=("sounds",))


@pytest.fixture(scope="module")
def sound_set(sounds_cache) -> sounds.SoundSet:
    return sounds.load_sounds(sounds_cache)


def _copy_sounds(src_cache: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    """A private cache holding a copy of the clips (not the feature caches)."""
    tmp_cache = tmp_path / "cache"
    shutil.copytree(assets.sounds_dir(src_cache), assets.sounds_dir(tmp_cache), ignore=shutil.ignore_patterns("*.npz"))
    return tmp_cache


# ---- assets -------------------------------------------------------------------------------------

def test_sounds_group_verified_and_idempotent(sounds_cache):
    files = assets.group_files("sounds")
    assert len(files) == 150 and files == sorted(files)
    assert assets.listing_sha256({rel: sounds_cache / rel for rel in files}) == assets.SOUNDS_SHA256
    assert "sounds" not in assets.GROUPS and "sounds" in assets.ALL_GROUPS  # fetched on demand only
    messages: list[str] = []
    mtime = (sounds_cache / files[0]).stat().st_mtime_ns
    assets.ensure_assets(sounds_cache, which=("sounds",), log=messages.append)
    assert messages == ["[sounds] 150 files verified, nothing to fetch"]
    assert (sounds_cache / files[0]).stat().st_mtime_ns == mtime
    assert not list(sounds_cache.glob(".fetch-*"))


def test_corrupt_and_missing_clips_are_refetched(sounds_cache, tmp_path, monkeypatch):
    """A bad listing refetches the whole group; here from a verified "system install" (the shared
    cache) so the test needs no network; the apt path is the one the first fetch took."""
    tmp_cache = _copy_sounds(sounds_cache, tmp_path)
    corrupt = assets.sounds_dir(tmp_cache) / "tabla_na.flac"
    raw = bytearray(corrupt.read_bytes())
    raw[500] ^= 0xFF
    corrupt.write_bytes(bytes(raw))
    messages: list[str] = []
    monkeypatch.setattr(assets, "_SYSTEM_SOUNDS_DIR", assets.sounds_dir(sounds_cache))
    assets.ensure_assets(tmp_cache, which=("sounds",), log=messages.append)
    assert any("checksum mismatch" in m and assets.SOUNDS_SHA256 in m for m in messages), messages
    assert any("copying from system install" in m for m in messages), messages
    files = assets.group_files("sounds")
    assert assets.listing_sha256({rel: tmp_cache / rel for rel in files}) == assets.SOUNDS_SHA256

    (assets.sounds_dir(tmp_cache) / "bd_808.flac").unlink()
    messages.clear()
    assets.ensure_assets(tmp_cache, which=("sounds",), log=messages.append)
    assert any("1 of 150 files missing" in m for m in messages), messages
    assert (assets.sounds_dir(tmp_cache) / "bd_808.flac").is_file()
    assert not list(tmp_cache.glob(".fetch-*"))


def test_wrong_listing_after_refetch_raises_and_keeps_cache(sounds_cache, tmp_path, monkeypatch):
    tmp_cache = _copy_sounds(sounds_cache, tmp_path)
    victim = assets.sounds_dir(tmp_cache) / "elec_pop.flac"
    victim.unlink()

    def fetch_with_a_bad_file(staging, log):  # what a changed registry copy would look like
        out = {}
        for rel in assets.group_files("sounds"):
            out[rel] = staging / rel
            out[rel].parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sounds_cache / rel, out[rel])
        out["sonic-pi-samples/drum_roll.flac"].write_bytes(b"changed")
        return out

    monkeypatch.setattr(assets, "_fetch_sounds", fetch_with_a_bad_file)
    before = (assets.sounds_dir(tmp_cache) / "drum_roll.flac").read_bytes()
    with pytest.raises(AssetError) as err:
        assets.ensure_assets(tmp_cache, which=("sounds",))
    msg = str(err.value)
    assert assets.SOUNDS_SHA256 in msg and assets.SOUNDS_DEB in msg and "sounds" in msg
    assert (assets.sounds_dir(tmp_cache) / "drum_roll.flac").read_bytes() == before  # nothing replaced
    assert not victim.exists()
    assert not list(tmp_cache.glob(".fetch-*"))


def test_apt_failure_names_package(tmp_path):
    bad = "sonic-pi-samples-does-not-exist"
    with pytest.raises(AssetError) as err:
        assets._fetch_sounds(tmp_path, None, package=bad, apt_update=False)
    msg = str(err.value)
    assert bad in msg and "apt-get download" in msg and "What to do" in msg


# ---- the clip set -------------------------------------------------------------------------------

def test_load_sounds_categories_and_counts(sound_set, sounds_cache):
    s = sound_set
    assert s.categories == tuple(sorted(EXPECTED_COUNTS))
    counts = dict(zip(s.categories, np.bincount(s.labels, minlength=len(s.categories)).tolist()))
    assert counts == EXPECTED_COUNTS and min(counts.values()) >= sounds.MIN_CLIPS
    assert s.features.shape == (150, *sounds.INPUT_SHAPE) and s.features.dtype == np.float32
    assert np.isfinite(s.features).all() and s.features.min() >= 0.0
    assert np.mean(s.features > sounds.INPUT_RANGE[1]) < 5e-3  # the int8 range covers the clips (0.18% saturate)
    assert s.files == tuple(sorted(s.files)) and all(sounds.category_of(f) == s.categories[y]
                                                      for f, y in zip(s.files, s.labels))
    assert s.labels.dtype == np.int64
    assert sounds.features_path(sounds_cache).is_file()
    again = sounds.load_sounds(sounds_cache)  # from the feature cache
    assert np.array_equal(again.features, s.features) and again.files == s.files


def test_load_sounds_recomputes_a_corrupt_cache_and_needs_the_clips(sounds_cache, sound_set, tmp_path):
    tmp_cache = _copy_sounds(sounds_cache, tmp_path)
    path = sounds.features_path(tmp_cache)
    path.write_bytes(b"not an npz")
    s = sounds.load_sounds(tmp_cache)
    assert np.array_equal(s.features, sound_set.features)  # decoding is deterministic
    assert np.array_equal(np.load(path)["features"], s.features)
    with pytest.raises(FileNotFoundError, match="ensure_assets"):
        sounds.load_sounds(tmp_path / "empty")


def test_input_range_is_mltk_models_int8_input(sounds_cache):
    """INPUT_RANGE reproduces the input quantization of MLTK's own int8 keyword_spotting.tflite."""
    from ai_edge_litert.interpreter import Interpreter
    path = assets.model_dir(sounds.MODEL_NAME, sounds_cache) / f"{sounds.MODEL_NAME}.tflite"
    tensors = [t for t in Interpreter(model_path=str(path)).get_tensor_details()
               if t["dtype"] == np.int8 and tuple(t["shape"][1:]) == sounds.INPUT_SHAPE]
    assert tensors, "no int8 input tensor in MLTK's model"
    scale, zero_point = tensors[0]["quantization"]
    assert zero_point == -128 and scale == pytest.approx(sounds.INPUT_SCALE, rel=1e-7)
    assert sounds.INPUT_RANGE == (0.0, pytest.approx(255 * scale))


# ---- episodes -----------------------------------------------------------------------------------

def test_episode_shape_disjoint_deterministic(sound_set):
    s = sound_set
    ep = sounds.sounds_episode(s, ways=5, shots=1, seed=3)
    assert isinstance(ep, sounds.SoundEpisode) and ep.backbone == sounds.BACKBONE == "ds_cnn_kws"
    assert ep.x_support.shape == (5, *sounds.INPUT_SHAPE) and list(ep.y_support) == [0, 1, 2, 3, 4]
    assert len(ep.classes) == 5 and list(ep.classes) == sorted(ep.classes)
    assert not set(ep.support_index) & set(ep.test_index)
    chosen = [s.categories.index(c) for c in ep.classes]
    assert sorted(ep.test_index) == sorted(set(np.flatnonzero(np.isin(s.labels, chosen))) - set(ep.support_index))
    for idx, y in ((ep.support_index, ep.y_support), (ep.test_index, ep.y_test)):
        assert [ep.classes[v] for v in y] == [s.categories[v] for v in s.labels[idx]]
    assert np.array_equal(ep.x_test, s.features[ep.test_index]) and ep.x_test.shape[0] == len(ep.y_test)
    cls, sup, qry = data.episode_split(s.labels, 5, 1, None, 3)  # the same draws as the shared helper
    assert np.array_equal(sup, ep.support_index) and np.array_equal(qry, ep.test_index)

    again = sounds.sounds_episode(s, ways=5, shots=1, seed=3)
    assert np.array_equal(again.support_index, ep.support_index) and again.classes == ep.classes
    others = {tuple(sounds.sounds_episode(s, seed=k).support_index) for k in range(10)}
    assert len(others) == 10


def test_episode_queries_capped(sound_set):
    ep = sounds.sounds_episode(sound_set, ways=10, shots=2, queries=3, seed=1)
    assert np.bincount(ep.y_support).tolist() == [2] * 10 and np.bincount(ep.y_test).tolist() == [3] * 10
    ep = sounds.sounds_episode(sound_set, ways=10, shots=7, queries=12, seed=1)
    counts = np.bincount(ep.y_test).tolist()
    assert counts == [min(12, EXPECTED_COUNTS[c] - 7) for c in ep.classes]  # glitch (8 clips) keeps 1


@pytest.mark.parametrize("kwargs, match", [
    ({"ways": 1}, "ways must be an integer >= 2"),
    ({"ways": 11}, "only 10 categories"),
    ({"ways": True}, "ways"),
    ({"shots": 0}, "shots must be"),
    ({"shots": 8}, "'glitch' has 8 clips, so at most 7 shots"),
    ({"queries": 0}, "queries must be"),
    ({"seed": -1}, "seed must be"),
    ({"seed": 1.5}, "seed must be"),
])
def test_episode_bad_arguments(sound_set, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sounds.sounds_episode(sound_set, **kwargs)


def test_episode_needs_a_sound_set():
    with pytest.raises(TypeError, match="SoundSet"):
        sounds.sounds_episode(np.zeros((3, 50, 10, 1)))


def test_nearest_prototype_and_calibration_inputs(sound_set):
    ep = sounds.sounds_episode(sound_set, seed=0)
    acc = sounds.nearest_prototype_accuracy(ep.x_support, ep.y_support, ep.x_test, ep.y_test)
    assert 0.0 <= acc <= 1.0
    assert sounds.nearest_prototype_accuracy(ep.x_support, ep.y_support, ep.x_support, ep.y_support) == 1.0
    cal = sounds.calibration_inputs(sound_set, ep)
    chosen = np.isin(sound_set.labels, [sound_set.categories.index(c) for c in ep.classes])
    assert len(cal) == 5 + int((~chosen).sum())  # never a query clip
    with pytest.raises(ValueError, match="shapes"):
        sounds.nearest_prototype_accuracy(ep.x_support, ep.y_support, ep.x_test[:, :10], ep.y_test)


# ---- end to end: DS-CNN + ProtoNet head through the converter, int8 on LiteRT --------------------

@pytest.fixture(scope="module")
def kws(sound_set, sounds_cache, tmp_path_factory):
    """Episode 0's float prototype model and its int8 conversion (head trainable)."""
    from converters import pipeline, tasks as ctasks
    from tflite_fg.model import FgModel
    ep = sounds.sounds_episode(sound_set, ways=5, shots=1, seed=0)
    source = ctasks.load_source_model(sounds.MODEL_NAME, sounds_cache)
    float_model = ctasks.prototype_model(source, ep.x_support, ep.y_support, num_classes=5)
    cfg = pipeline.ConvertConfig(trainable="head", input_range=sounds.INPUT_RANGE, class_names=ep.classes,
                                 preprocessing=sounds.PREPROCESSING,
                                 source={"model": "mlperf-tiny ds-cnn kws", "task": "sounds-fewshot", "seed": 0})
    path = tmp_path_factory.mktemp("kws") / "kws_head.tflite"
    pipeline.save(path, *pipeline.convert_keras_model(float_model, cfg, sounds.calibration_inputs(sound_set, ep)))
    return ep, source, float_model, FgModel(path)


def test_kws_converts_with_prototype_head(kws):
    ep, _, float_model, m = kws
    assert m.meta.input_shape == sounds.INPUT_SHAPE and m.meta.num_classes == 5
    assert m.meta.class_names == ep.classes
    assert m.meta.input_scale == pytest.approx(sounds.INPUT_SCALE) and m.meta.input_zero_point == -128
    assert [t.layer for t in m.meta.trainable] == ["head"] and m.trainable_params == 5 * 64
    assert m.has_prefix
    xq = m.quantize_input(ep.x_test)
    assert np.array_equal(m.predict(xq, m.initial_params()), m.predict(xq))  # forward == infer
    float_pred = float_model.predict(ep.x_test, verbose=0).argmax(1)
    assert np.mean(m.predict(xq) == float_pred) >= 0.9  # int8 agrees with the float prototype classifier


def test_kws_zero_shot_well_above_chance(kws, sound_set):
    """ProtoNet with the int8 network's features over 50 episodes (chance: 20%), next to the float
    model's and raw-feature prototypes; and episode 0's int8 model itself."""
    from converters import graph_surgery, pipeline
    ep, source, _, m = kws
    assert m.accuracy(m.quantize_input(ep.x_test), ep.y_test, m.initial_params()) > 0.25
    (h,) = m.features(m.quantize_input(sound_set.features))  # int8 [150, 64]: what the head reads
    int8_emb = h.reshape(len(h), -1).astype(np.float32)
    float_emb = graph_surgery.feature_model(pipeline.prepare_float_model(source)).predict(sound_set.features, verbose=0)
    acc = {"int8": [], "float": [], "raw": []}
    for seed in range(50):
        e = sounds.sounds_episode(sound_set, ways=5, shots=1, seed=seed)
        for key, x in (("int8", int8_emb), ("float", float_emb), ("raw", sound_set.features)):
            acc[key].append(sounds.nearest_prototype_accuracy(x[e.support_index], e.y_support,
                                                              x[e.test_index], e.y_test))
    mean = {k: float(np.mean(v)) for k, v in acc.items()}
    assert mean["int8"] > 0.30 and mean["float"] > 0.30 and mean["raw"] > 0.30, mean
    assert abs(mean["int8"] - mean["float"]) < 0.05, mean


def test_kws_fine_tune_spec_converts(kws, sound_set, tmp_path):
    """The suite's full fine-tuning ("all": every conv, depthwise conv and the head) converts, and
    `forward` with the initial kernels gives the `infer` graph's predictions."""
    from converters import pipeline
    from tflite_fg.model import FgModel
    ep, _, float_model, _ = kws
    cfg = pipeline.ConvertConfig(trainable="all", input_range=sounds.INPUT_RANGE, class_names=ep.classes)
    path = tmp_path / "kws_all.tflite"
    pipeline.save(path, *pipeline.convert_keras_model(float_model, cfg, sounds.calibration_inputs(sound_set, ep)))
    m = FgModel(path)
    layers = [t.layer for t in m.meta.trainable]
    assert len(layers) == 10 and layers[0] == "conv2d" and layers[-1] == "head"
    assert {t.op for t in m.meta.trainable} == {"Conv2D", "DepthwiseConv2D", "Dense"}
    assert not m.has_prefix  # the first layer is trainable: nothing frozen to cache
    assert m.trainable_params == 21_568  # 10x4x64 + 4 x 3x3x64 + 4 x 64x64 + 5x64
    xq = m.quantize_input(ep.x_test)
    assert np.array_equal(m.predict(xq, m.initial_params()), m.predict(xq))
    assert m.accuracy(xq, ep.y_test) > 0.25
