"""tflite_fg.audio on real sonic-pi-samples clips: decoding, resampling, and the numpy microfrontend,
which must equal TensorFlow's audio_microfrontend op bit for bit (converter-side reference)."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tflite_fg import assets, audio, sounds

STEREO_CLIP, MONO_CLIP, LONG_CLIP, SHORT_CLIP = "ambi_choir.flac", "tabla_na.flac", "loop_amen.flac", "tabla_ke1.flac"


@pytest.fixture(scope="module")
def clips(cache_dir) -> pathlib.Path:
    """The cached sonic-pi-samples clips (the optional "sounds" asset group, fetched on demand)."""
    assets.ensure_assets(cache_dir, which=("sounds",))
    return assets.sounds_dir(cache_dir)


def test_read_audio_real_clips(clips):
    import soundfile as sf
    for name in (STEREO_CLIP, MONO_CLIP):
        x, sr = audio.read_audio(clips / name)
        info = sf.info(str(clips / name))
        assert sr == 44100 and x.dtype == np.float32 and x.shape == (info.frames,)
        assert np.isfinite(x).all() and np.abs(x).max() <= 1.0 and np.abs(x).max() > 0.01
    assert sf.info(str(clips / STEREO_CLIP)).channels == 2  # averaged to mono above


def test_read_audio_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        audio.read_audio(tmp_path / "missing.flac")
    bad = tmp_path / "not_audio.flac"
    bad.write_bytes(b"this is not a FLAC file")
    with pytest.raises(ValueError, match="cannot decode"):
        audio.read_audio(bad)


def test_resample_length_and_frequency():
    assert len(audio.resample(np.zeros(44100, np.float32), 44100, 16000)) == 16000
    assert len(audio.resample(np.zeros(1234, np.float32), 44100, 16000)) == int(np.ceil(1234 * 16000 / 44100))
    t = np.arange(44100) / 44100
    y = audio.resample(np.sin(2 * np.pi * 1000 * t).astype(np.float32), 44100, 16000)
    assert y.dtype == np.float32
    assert np.argmax(np.abs(np.fft.rfft(y))) == 1000  # 1 kHz stays 1 kHz (1 Hz bins for 16,000 samples)
    x = np.ones(10, np.float32)
    same = audio.resample(x, 16000, 16000)
    assert np.array_equal(same, x) and same is not x


@pytest.mark.parametrize("args, match", [
    ((np.zeros((2, 100), np.float32), 44100, 16000), "1-D"),
    ((np.zeros(100, np.int16), 44100, 16000), "float"),
    ((np.array([0.0, np.nan], np.float32), 44100, 16000), "NaN"),
    ((np.zeros(100, np.float32), 0, 16000), "sr_in"),
    ((np.zeros(100, np.float32), 44100, 1.5), "sr_out"),
    ((np.zeros(100, np.float32), True, 16000), "sr_in"),
])
def test_resample_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        audio.resample(*args)


def test_clip_features_real_clips(clips):
    for name in (STEREO_CLIP, MONO_CLIP, LONG_CLIP, SHORT_CLIP):
        x, sr = audio.read_audio(clips / name)
        f = audio.clip_features(x, sr)
        assert f.shape == sounds.INPUT_SHAPE == (50, 10, 1) and f.dtype == np.float32
        assert np.isfinite(f).all() and f.min() >= 0.0
        # In the int8 input range of MLTK's own model (0..224.66): at most a few saturating values.
        assert f.max() > 50.0 and np.mean(f > sounds.INPUT_RANGE[1]) < 0.01, (name, f.max())
        assert np.array_equal(f, audio.clip_features(x, sr))  # deterministic
    assert not audio.clip_features(np.zeros(8000, np.float32), 16000).any()  # silence -> zeros


def test_loudest_window_is_deterministic():
    x = np.zeros(50_000, np.float32)
    x[30_000:30_100] = 0.5
    w = audio.loudest_window(x, 1000)
    assert len(w) == 1000 and w[0] == 0.5 and w[99] == 0.5 and not w[100:].any()  # ties: the burst starts it
    x[40_000:40_500] = 0.01  # less energy than the burst
    assert np.array_equal(audio.loudest_window(x, 1000), w)
    short = audio.loudest_window(np.ones(10, np.float32), 16)
    assert np.array_equal(short, np.r_[np.ones(10), np.zeros(6)].astype(np.float32))
    with pytest.raises(ValueError, match="no samples"):
        audio.clip_features(np.zeros(0, np.float32), 16000)


def test_microfrontend_rejects_bad_input():
    with pytest.raises(ValueError, match="int16"):
        audio.microfrontend(np.zeros(1000, np.float32))
    assert audio.microfrontend(np.zeros(100, np.int16)).shape == (0, audio.NUM_CHANNELS)  # shorter than a window
    assert audio.features(np.zeros(audio.CLIP_SAMPLES, np.float32)).shape == (50, 10)


def _tf_microfrontend(pcm, sample_rate=16000, window_ms=30, step_ms=20, channels=10, lower=125.0, upper=4000.0):
    tf = pytest.importorskip("tensorflow")
    from tensorflow.lite.experimental.microfrontend.python.ops import audio_microfrontend_op as op
    return op.audio_microfrontend(tf.constant(pcm), sample_rate=sample_rate, window_size=window_ms,
                                  window_step=step_ms, num_channels=channels, upper_band_limit=upper,
                                  lower_band_limit=lower, enable_pcan=False).numpy()


def test_microfrontend_equals_tensorflow_op(clips):
    """The numpy port is bit-exact: real clips (whole, at 16 kHz) and edge cases."""
    rng = np.random.default_rng(0)
    cases = {name: audio.to_int16(audio.resample(*audio.read_audio(clips / name), 16000))
             for name in (STEREO_CLIP, LONG_CLIP, SHORT_CLIP, "drum_roll.flac", "bd_808.flac")}
    cases.update(zeros=np.zeros(audio.CLIP_SAMPLES, np.int16),
                 full_scale=rng.integers(-32768, 32768, audio.CLIP_SAMPLES).astype(np.int16),
                 tiny=rng.integers(-2, 3, audio.CLIP_SAMPLES).astype(np.int16))
    for name, pcm in cases.items():
        ref = _tf_microfrontend(pcm)
        got = audio.microfrontend(pcm)
        assert got.dtype == np.uint16 and got.shape == ref.shape, name
        np.testing.assert_array_equal(got, ref, err_msg=name)
    # Other settings (a 512- and a 128-point FFT: radix 4, and radix 4 + 2).
    pcm = cases[LONG_CLIP]
    for settings in [(16000, 25, 10, 40, 125.0, 7500.0), (16000, 8, 4, 10, 125.0, 3000.0)]:
        np.testing.assert_array_equal(audio.microfrontend(pcm, *settings), _tf_microfrontend(pcm, *settings))


def test_runtime_modules_import_numpy_only():
    code = ("import sys\nimport tflite_fg.audio, tflite_fg.sounds\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras', 'soundfile', "
            "'scipy', 'absl')]\nassert not bad, bad\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
