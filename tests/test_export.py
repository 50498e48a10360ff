"""Export bakes trained kernels into `infer`; the result is bit-identical to `forward`."""
import os

import numpy as np
import pytest

from tflite_fg import export
from tflite_fg.model import FgModel


def _trained_like(params, seed=0):
    rng = np.random.default_rng(seed)
    return [np.clip(p.astype(np.int16) + rng.integers(-3, 4, p.shape), -127, 127).astype(np.int8) for p in params]


def test_exported_infer_equals_forward_bit_exact(block_model_path, fewshot_task, tmp_path):
    model = FgModel(block_model_path, engine="builtin")
    trained = _trained_like(model.initial_params())
    out = tmp_path / "trained.tflite"
    export.export_model(out, model.model_bytes, model.meta, trained)
    assert sorted(os.listdir(tmp_path)) == ["trained.tflite", "trained.tflite.json"]   # no temp files
    exported = FgModel(out, engine="builtin")
    xq = model.quantize_input(fewshot_task.x_test[:500])
    np.testing.assert_array_equal(exported.infer(xq), model.forward(xq, trained))
    for a, b in zip(exported.initial_params(), trained):     # training can resume from the export
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(exported.infer(xq), model.infer(xq))


def test_exported_under_xnnpack_stays_within_a_few_lsb(block_model_path, fewshot_task, tmp_path):
    """XNNPACK runs `infer`'s constant-weight ops with its own requantization (docs/design.md)."""
    model = FgModel(block_model_path, engine="xnnpack")
    trained = _trained_like(model.initial_params(), seed=1)
    out = tmp_path / "t.tflite"
    export.export_model(out, model.model_bytes, model.meta, trained)
    xq = model.quantize_input(fewshot_task.x_test[:500])
    a = FgModel(out, engine="xnnpack").infer(xq).astype(int)
    b = model.forward(xq, trained).astype(int)
    assert np.abs(a - b).max() <= 8 and (a.argmax(1) == b.argmax(1)).mean() >= 0.97


def test_export_rejects_bad_tensors(head_model_path, tmp_path):
    model = FgModel(head_model_path, engine="builtin")
    p = model.initial_params()
    with pytest.raises(ValueError, match="must be int8"):
        export.export_model(tmp_path / "x.tflite", model.model_bytes, model.meta, [p[0].astype(np.int32)])
    bad = p[0].copy()
    bad[0, 0] = -128
    with pytest.raises(ValueError, match="-128"):
        export.export_model(tmp_path / "x.tflite", model.model_bytes, model.meta, [bad])
    assert not list(tmp_path.iterdir())
