"""The 15 corruptions on real Fashion-MNIST images: contract, determinism, growth with severity,
differential checks against scipy, and a fixed pretrained CNN losing accuracy as severity rises."""
import math

import numpy as np
import pytest
from scipy import fft as sfft
from scipy import ndimage

from tflite_fg import corruptions as C
from tflite_fg import data, fmnist_c


@pytest.fixture(scope="module")
def images(cache_dir) -> np.ndarray:
    return data.load_fashion_mnist("test", cache_dir)[0][:64]


def test_fifteen_corruptions_one_table():
    assert len(C.CORRUPTIONS) == 15 and len(set(C.CORRUPTIONS)) == 15
    assert tuple(C._FUNCTIONS) == C.CORRUPTIONS
    assert all(len(p) == len(C.SEVERITIES) for p in C.PARAMS.values())
    assert C.STOCHASTIC <= set(C.CORRUPTIONS)


@pytest.mark.parametrize("severity", C.SEVERITIES)
@pytest.mark.parametrize("name", C.CORRUPTIONS)
def test_contract_and_determinism(images, name, severity):
    out = C.corrupt(images, name, severity, seed=3)
    assert out.dtype == np.uint8 and out.shape == images.shape
    assert np.abs(out.astype(np.int16) - images).mean() > 0.5     # it changed the images
    assert out.std() > 5                                           # not flattened to one value
    np.testing.assert_array_equal(out, C.corrupt(images, name, severity, seed=3))
    again = getattr(C, name)(images, severity, 4)
    if name in C.STOCHASTIC:
        assert not np.array_equal(out, again)
    else:
        np.testing.assert_array_equal(out, again)


@pytest.mark.parametrize("name", sorted(set(C.CORRUPTIONS) - C.STOCHASTIC))
def test_deterministic_ones_treat_images_independently(images, name):
    np.testing.assert_array_equal(C.corrupt(images[:5], name, "medium"), C.corrupt(images, name, "medium")[:5])


@pytest.mark.parametrize("name", C.CORRUPTIONS)
def test_change_grows_with_severity(images, name):
    change = [np.abs(C.corrupt(images, name, s, seed=1).astype(np.float64) - images).mean() for s in C.SEVERITIES]
    assert change[0] > 0.5
    for weaker, stronger in zip(change, change[1:]):
        assert stronger >= weaker - 0.5, change      # tolerance: half a grey level


def test_gaussian_blur_matches_scipy(images):
    for severity, sigma in zip(C.SEVERITIES, C.PARAMS["gaussian_blur"]):
        ref = ndimage.gaussian_filter(images / 255.0, sigma, mode="mirror", axes=(1, 2),
                                      truncate=math.ceil(3 * sigma) / sigma)
        diff = np.abs(C.gaussian_blur(images, severity).astype(np.int16) - np.rint(ref * 255))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_zoom_blur_sampling_matches_scipy_map_coordinates(images):
    zoom = C.PARAMS["zoom_blur"][2]
    c = 27 / 2.0
    ys, xs = np.meshgrid(np.arange(28.0), np.arange(28.0), indexing="ij")
    ref = np.zeros(images.shape)
    for z in np.linspace(1.0, zoom, 8):
        for n in range(len(images)):
            ref[n] += ndimage.map_coordinates(images[n] / 255.0, [c + (ys - c) / z, c + (xs - c) / z],
                                              order=1, mode="mirror")
    diff = np.abs(C.zoom_blur(images, "hard").astype(np.int16) - np.rint(ref / 8 * 255))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_jpeg_dct_is_scipys_orthonormal_dct():
    np.testing.assert_allclose(C._dct_matrix(), sfft.dct(np.eye(8), norm="ortho", axis=0), atol=1e-6)


def test_pixelate_is_block_mean_where_blocks_fit(images):
    out = C.pixelate(images, "easy")        # 2x2 blocks tile 28x28 exactly
    blocks = images.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4))
    diff = np.abs(out[:, ::2, ::2] - blocks)
    assert diff.max() <= 0.5                    # 0.5 only on ties (a mean ending in .5), float32 decides
    assert np.all((diff < 0.5) | (blocks % 1 == 0.5))


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 28, 28), np.float32), "uint8"),
    (np.zeros((28, 28), np.uint8), r"\[N, 28, 28\]"),
    (np.zeros((2, 32, 32), np.uint8), r"\[N, 28, 28\]"),
    (np.zeros((2, 28, 28, 1), np.uint8), r"\[N, 28, 28\]"),
])
def test_bad_images_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        C.corrupt(bad, "fog", "easy", 0)


def test_bad_names_severities_seeds_raise(images):
    with pytest.raises(ValueError, match="unknown corruption 'frost'.*gaussian_noise"):
        C.corrupt(images, "frost", "easy")
    with pytest.raises(ValueError, match="unknown severity 'extreme'.*easy, medium, hard"):
        C.corrupt(images, "fog", "extreme")
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        C.corrupt(images, "fog", "easy", seed=-1)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        C.gaussian_noise(images, "easy", 1.5)


# ---- a fixed pretrained model loses accuracy as severity rises ------------------------------------

N_EVAL = 1000


@pytest.fixture(scope="module")
def cnn(cache_dir):
    from converters import fmnist_cnn
    return fmnist_cnn.load_or_train(cache_dir)


def _predict(model, x: np.ndarray) -> np.ndarray:
    return model.predict(x, batch_size=500, verbose=0).argmax(axis=1)


def test_severity_lowers_a_fixed_models_accuracy(cnn, cache_dir):
    images, labels = fmnist_c.sample_images(N_EVAL, 0, cache_dir)
    mixed = {"clean": float((_predict(cnn, fmnist_c.preprocess(images)) == labels).mean())}
    per_type = {}
    for severity in C.SEVERITIES:
        split = fmnist_c.load_fmnist_c(severity, n_images=N_EVAL, seed=0, cache=cache_dir)
        x, y = np.concatenate([split.x_adapt, split.x_test]), np.concatenate([split.y_adapt, split.y_test])
        c = np.concatenate([split.c_adapt, split.c_test])
        assert sorted(y.tolist()) == sorted(labels.tolist())      # the same images, corrupted
        ok = _predict(cnn, x) == y
        mixed[severity] = float(ok.mean())
        per_type[severity] = [float(ok[c == k].mean()) for k in range(len(C.CORRUPTIONS))]
    print("\nmixed accuracy " + "  ".join(f"{k} {v:.3f}" for k, v in mixed.items()))
    for k, name in enumerate(C.CORRUPTIONS):
        print(f"  {name:<18}" + "  ".join(f"{s} {per_type[s][k]:.3f}" for s in C.SEVERITIES))
    assert mixed["clean"] > mixed["easy"] > mixed["medium"] > mixed["hard"], mixed
    assert mixed["clean"] >= 0.85 and mixed["hard"] <= 0.6, mixed
