"""The few-shot tasks: scikit-learn's 8x8 digits next to Fashion-MNIST (tflite_fg.tasks)."""
import sys

import numpy as np
import pytest

from tflite_fg import data, runs, tasks

N_DIGITS = 1797  # load_digits(): 178, 182, 177, 183, 181, 182, 181, 179, 174, 180 per class


@pytest.fixture(scope="module")
def digits():
    return tasks.load_digits_fewshot(shots=10, n_test=500, seed=0)


def test_digits_split_sizes_and_labels(digits) -> None:
    assert digits.x_support.shape == (100, 32, 32, 3) and digits.x_test.shape == (500, 32, 32, 3)
    assert digits.x_support.dtype == digits.x_test.dtype == np.float32
    assert digits.y_support.dtype == digits.y_test.dtype == np.int64
    assert np.array_equal(digits.y_support, np.repeat(np.arange(10), 10))  # sorted by class
    assert set(np.unique(digits.y_test)) == set(range(10))
    assert (digits.shots, digits.seed) == (10, 0)
    small = tasks.load_digits_fewshot(shots=3, n_test=40, seed=5)
    assert small.x_support.shape[0] == 30 and small.x_test.shape[0] == 40


def test_split_support_test_is_disjoint_and_seeded() -> None:
    y = np.repeat(np.arange(10), 20)
    rng_y = np.random.default_rng(0).permutation(y)
    for seed in range(5):
        sup, test = tasks.split_support_test(rng_y, 4, 120, seed)
        assert len(sup) == 40 and len(test) == 120 and len(np.unique(test)) == 120
        assert np.intersect1d(sup, test).size == 0
        assert np.array_equal(sup, data.fewshot_split(rng_y, 4, seed)) and np.all(np.diff(test) > 0)
    a, b = tasks.split_support_test(rng_y, 4, 120, 1), tasks.split_support_test(rng_y, 4, 120, 1)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[1], tasks.split_support_test(rng_y, 4, 120, 2)[1])
    # Taking every remaining example partitions the data set.
    sup, test = tasks.split_support_test(rng_y, 4, 160, 0)
    assert np.array_equal(np.sort(np.concatenate([sup, test])), np.arange(200))
    with pytest.raises(ValueError, match="only 160 examples remain"):
        tasks.split_support_test(rng_y, 4, 161, 0)


def test_digits_support_and_test_partition_the_images() -> None:
    """All images not in the support, as test: support + test is exactly the data set (no overlap)."""
    from sklearn.datasets import load_digits
    every = data.to_rgb32(tasks.digits_to_uint8(load_digits().images), tasks.PIXEL_SCALE, tasks.PIXEL_OFFSET)
    t = tasks.load_digits_fewshot(shots=10, n_test=N_DIGITS - 100, seed=3)
    both = np.concatenate([t.x_support, t.x_test]).reshape(N_DIGITS, -1)
    key = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731  (row multiset)
    assert np.array_equal(key(both), key(every.reshape(N_DIGITS, -1)))


def test_digits_deterministic_per_seed(digits) -> None:
    again = tasks.load_digits_fewshot(shots=10, n_test=500, seed=0)
    for f in ("x_support", "y_support", "x_test", "y_test"):
        assert np.array_equal(getattr(digits, f), getattr(again, f)), f
    other = tasks.load_digits_fewshot(shots=10, n_test=500, seed=1)
    assert not np.array_equal(digits.x_support, other.x_support)
    assert not np.array_equal(digits.y_test, other.y_test)


def test_digits_value_range(digits) -> None:
    for x in (digits.x_support, digits.x_test):
        assert np.isfinite(x).all()
        assert x.min() >= tasks.INPUT_RANGE[0] and x.max() <= tasks.INPUT_RANGE[1]
        np.testing.assert_array_equal(x[..., 0], x[..., 2])
    # Black background is -1 exactly and the full ink level 16 reaches 255 -> 127/128.
    assert digits.x_test.min() == -1.0 and digits.x_test.max() == np.float32(127 / 128)
    # 0..16 -> uint8 grey by rint(x * 255/16).
    assert np.array_equal(tasks.digits_to_uint8(np.array([[[0.0, 1.0, 8.0, 16.0]]])),
                          np.array([[[0, 16, 128, 255]]], np.uint8))


def test_load_task_dispatch(digits, cache_dir) -> None:
    assert tasks.TASKS == ("fmnist", "digits")
    d = tasks.load_task("digits", 10, 500, 0)
    assert np.array_equal(d.x_test, digits.x_test) and np.array_equal(d.y_support, digits.y_support)
    f = tasks.load_task("fmnist", 2, 10, 0, cache=cache_dir)
    ref = tasks.load_fmnist_fewshot(2, 10, 0, cache_dir)
    assert f.x_support.shape == (20, 32, 32, 3) and np.array_equal(f.x_test, ref.x_test)
    with pytest.raises(ValueError, match="choices: fmnist, digits"):
        tasks.load_task("cifar", 10, 500, 0)


def test_digits_bad_args() -> None:
    for shots, n_test in ((0, 10), (10, 0), (-1, 10)):
        with pytest.raises(ValueError, match="must be >= 1"):
            tasks.load_digits_fewshot(shots, n_test)
    with pytest.raises(ValueError, match="class 8 has only 174"):
        tasks.load_digits_fewshot(shots=175, n_test=10)
    with pytest.raises(ValueError, match="n_test=1698"):
        tasks.load_digits_fewshot(shots=10, n_test=N_DIGITS - 100 + 1)
    with pytest.raises(ValueError, match=r"\[0, 16\]"):
        tasks.digits_to_uint8(np.array([[[17.0]]]))


def test_digits_without_scikit_learn_names_the_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        tasks.load_digits_fewshot()


def test_default_model_path_per_task(tmp_path) -> None:
    fm = runs.default_model_path("fmnist", 20, 0, "last:4", tmp_path)
    assert fm == tmp_path / "converted" / "fmnist_resnet8_k20_s0_last4.tflite"  # the existing cache name
    assert runs.default_model_path("digits", 10, 1, "head", tmp_path).name == "digits_resnet8_k10_s1_head.tflite"
    with pytest.raises(ValueError, match="choices: fmnist, digits"):
        runs.default_model_path("mnist", 20, 0, "last:4", tmp_path)


def test_to_rgb32_resizes_8x8() -> None:
    out = data.to_rgb32(np.full((2, 8, 8), 255, np.uint8), 1 / 128, -1.0)
    np.testing.assert_array_equal(out, np.full((2, 32, 32, 3), 127 / 128, np.float32))
    with pytest.raises(ValueError, match="uint8"):
        data.to_rgb32(np.zeros((2, 8, 8), np.float32), 1 / 128, -1.0)


def test_digits_model_zero_shot_prototype_accuracy(digits, cache_dir, tmp_path) -> None:
    """ResNet-8 (CIFAR-10 features) + the digits support prototypes, int8: measured 74.4% (seed 0,
    last:4; 69.0% / 77.0% at seeds 1 / 2), chance is 10%."""
    from converters import pipeline, tasks as ctasks
    from tflite_fg.model import FgModel
    path = tmp_path / "digits.tflite"
    pipeline.save(path, *ctasks.convert_fewshot("digits", digits, "last:4", cache=cache_dir))
    model = FgModel(path)
    assert model.meta.class_names == tasks.DIGITS_CLASSES and model.meta.num_classes == 10
    assert model.meta.source["task"] == "digits-fewshot" and model.meta.source["shots"] == 10
    assert model.meta.preprocessing["grey_from"] == [0, 16]
    acc = model.accuracy(model.quantize_input(digits.x_test), digits.y_test)
    assert acc > 0.6, acc
    with pytest.raises(ValueError, match="choices: fmnist, digits"):
        ctasks.convert_fewshot("svhn", digits)


def test_backbone_registry() -> None:
    r8, vww = tasks.BACKBONES["resnet8"], tasks.BACKBONES["mobilenetv1_vww"]
    assert tasks.DEFAULT_BACKBONE == "resnet8"
    assert (r8.model_name, r8.input_size, r8.pixel_scale, r8.pixel_offset, r8.input_range) == \
        (tasks.MODEL_NAME, 32, tasks.PIXEL_SCALE, tasks.PIXEL_OFFSET, tasks.INPUT_RANGE)
    # MLTK's VWW script feeds raw pixels; its own .tflite quantizes the input with scale 1, zero point -128.
    assert (vww.model_name, vww.input_size, vww.pixel_scale, vww.pixel_offset, vww.input_range) == \
        ("visual_wake_words", 96, 1.0, 0.0, (0.0, 255.0))
    for bb in tasks.BACKBONES.values():  # uint8 0 and 255 land on the ends of the input range
        assert np.float32(bb.pixel_offset) == bb.input_range[0]
        assert np.float32(255 * np.float32(bb.pixel_scale) + np.float32(bb.pixel_offset)) == np.float32(bb.input_range[1])
    with pytest.raises(ValueError, match="choices: resnet8, mobilenetv1_vww"):
        tasks.get_backbone("resnet50")


def test_preprocessing_records_backbone_and_size() -> None:
    assert tasks.preprocessing("fmnist") == tasks.PREPROCESSING
    assert tasks.preprocessing("digits") == tasks.DIGITS_PREPROCESSING
    assert list(tasks.preprocessing("digits")) == list(tasks.DIGITS_PREPROCESSING)  # same JSON key order
    vww = tasks.preprocessing("fmnist", "mobilenetv1_vww")
    assert vww == {**tasks.PREPROCESSING, "resize": [96, 96], "scale": 1.0, "offset": 0.0}
    assert tasks.preprocessing("fmnist", "resnet8", 64)["resize"] == [64, 64]
    with pytest.raises(ValueError, match="choices: fmnist, digits"):
        tasks.preprocessing("cifar")


def test_default_size_is_bit_identical_to_the_32x32_path(cache_dir, fewshot_task) -> None:
    """The default task keeps its exact bytes: to_rgb32 of the same images, as before the size option."""
    x_train, y_train = data.load_fashion_mnist("train", cache_dir)
    x_test, _ = data.load_fashion_mnist("test", cache_dir)
    sup, test = data.fewshot_split(y_train, 20, 0), data.sample_indices(len(x_test), 1000, 0)
    np.testing.assert_array_equal(fewshot_task.x_support, data.to_rgb32(x_train[sup], 1 / 128, -1.0))
    np.testing.assert_array_equal(fewshot_task.x_test, data.to_rgb32(x_test[test], 1 / 128, -1.0))
    assert fewshot_task.backbone == "resnet8"
    explicit = tasks.load_fmnist_fewshot(20, 1000, 0, cache_dir, backbone="resnet8", size=32)
    for f in ("x_support", "y_support", "x_test", "y_test"):
        assert np.array_equal(getattr(explicit, f), getattr(fewshot_task, f)), f
    np.testing.assert_array_equal(data.to_rgb(x_test[:5], 1 / 128, -1.0, 32), data.to_rgb32(x_test[:5], 1 / 128, -1.0))


def test_size_option_resizes_and_scales(cache_dir) -> None:
    x_test, _ = data.load_fashion_mnist("test", cache_dir)
    test = data.sample_indices(len(x_test), 10, 0)
    big = tasks.load_fmnist_fewshot(2, 10, 0, cache_dir, size=96)  # ResNet-8 scaling at 96x96
    assert big.x_support.shape == (20, 96, 96, 3) and big.x_test.shape == (10, 96, 96, 3)
    grey = data.resize_bilinear(x_test[test], 96)
    np.testing.assert_array_equal(big.x_test[..., 1], grey * np.float32(1 / 128) + np.float32(-1.0))
    vww = tasks.load_task("fmnist", 2, 10, 0, cache_dir, backbone="mobilenetv1_vww")
    assert vww.backbone == "mobilenetv1_vww" and vww.x_test.shape == (10, 96, 96, 3)
    np.testing.assert_array_equal(vww.x_test, np.repeat(grey[..., None], 3, axis=-1))  # raw pixels, x*1 + 0
    assert vww.x_test.min() >= 0.0 and vww.x_test.max() <= 255.0
    assert np.array_equal(vww.y_test, big.y_test) and np.array_equal(vww.y_support, big.y_support)  # same split
    d = tasks.load_task("digits", 3, 20, 0, backbone="mobilenetv1_vww", size=48)
    assert d.x_support.shape == (30, 48, 48, 3) and d.x_test.max() == 255.0 and d.backbone == "mobilenetv1_vww"
    ref = tasks.load_digits_fewshot(3, 20, 0)
    assert np.array_equal(d.y_test, ref.y_test)


def test_size_and_backbone_errors(cache_dir) -> None:
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="size must be an integer >= 1"):
            tasks.load_fmnist_fewshot(2, 10, 0, cache_dir, size=bad)
        with pytest.raises(ValueError, match="size must be an integer >= 1"):
            data.to_rgb(np.zeros((1, 8, 8), np.uint8), 1.0, 0.0, bad)
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        tasks.load_task("digits", 3, 20, 0, backbone="vgg")
    with pytest.raises(ValueError, match="uint8"):
        data.to_rgb(np.zeros((2, 8, 8), np.float32), 1.0, 0.0, 16)


def test_fmnist_episode_labels_classes_and_splits(cache_dir) -> None:
    ep = tasks.load_fmnist_episode(ways=5, shots=5, queries=15, seed=7, split="test", cache=cache_dir)
    assert ep.x_support.shape == (25, 32, 32, 3) and ep.x_test.shape == (75, 32, 32, 3)
    assert (np.bincount(ep.y_support) == 5).all() and (np.bincount(ep.y_test) == 15).all()
    assert len(ep.classes) == 5 and set(ep.classes) <= set(data.FASHION_MNIST_CLASSES)
    x, y = data.load_fashion_mnist("test", cache_dir)
    classes, sup, _ = data.episode_split(y, 5, 5, 15, 7)
    assert ep.classes == tuple(data.FASHION_MNIST_CLASSES[c] for c in classes)
    assert np.array_equal(ep.x_support, data.to_rgb(x[sup], tasks.PIXEL_SCALE, tasks.PIXEL_OFFSET, 32))
    train_ep = tasks.load_fmnist_episode(seed=7, split="train", cache=cache_dir)  # tuning: other images
    assert not np.array_equal(train_ep.x_support, ep.x_support)
    with pytest.raises(ValueError, match="split"):
        tasks.load_fmnist_episode(split="val", cache=cache_dir)


def test_vww_faces_split() -> None:
    t = tasks.load_vww_faces(shots=10, seed=2)
    assert t.x_support.shape == (20, 96, 96, 3) and t.x_test.shape == (180, 96, 96, 3)
    assert t.backbone == "mobilenetv1_vww" and t.classes == ("person", "non_person")
    assert (np.bincount(t.y_support) == 10).all() and (np.bincount(t.y_test) == 90).all()
    assert t.x_support.min() >= 0 and t.x_support.max() <= 255  # raw pixels, as VWW was trained
    x, y = tasks.lfw_faces()
    assert x.dtype == np.uint8 and x.shape == (200, 25, 25) and (np.bincount(y) == 100).all()
    again = tasks.load_vww_faces(shots=10, seed=2)
    assert np.array_equal(again.x_test, t.x_test)
    assert not np.array_equal(tasks.load_vww_faces(shots=10, seed=3).x_support, t.x_support)
    for bad in (0, 100):
        with pytest.raises(ValueError, match="shots"):
            tasks.load_vww_faces(shots=bad)
