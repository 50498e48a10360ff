"""tflite_fg.memory and tools/memory.py on a tiny real conversion and the real ResNet-8 (no mocks).

The tiny model is Input(4,4,1) -> Conv2D(2, 3x3, same, relu) "conv" -> Flatten -> Dense(3) "head",
converted by the project's converter with the head trainable. Its graph (checked below):
  forward: CONV_2D(x [B,4,4,1], filter int8 [2,3,3,1] const, bias int32 [2] const) -> [B,4,4,2]
           RESHAPE(.., shape int32 [2] const) -> [B,32]
           FULLY_CONNECTED(.., w_head int8 [3,32] input, bias int32 [3] const) -> logits [B,3]
  infer:   the same with the head kernel a constant.
All tensors are int8 unless said otherwise, so element counts are bytes.
"""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tflite_fg import memory
from tflite_fg.model import ModelError

ROOT = pathlib.Path(__file__).resolve().parents[1]
P = 3 * 32  # trainable params: the head kernel [3, 32]
MODES = ("infer", "ff-w8", "ff-w16", "bp-fp32", "bp-qat")


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    from converters import pipeline
    from converters.keras_compat import keras
    keras.utils.set_random_seed(0)
    x = keras.Input((4, 4, 1))
    h = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="conv")(x)
    logits = keras.layers.Dense(3, name="head")(keras.layers.Flatten()(h))
    model = keras.Model(x, logits)
    model.get_layer("conv").bias.assign([0.1, -0.2])       # non-zero biases, so the converter keeps them
    model.get_layer("head").bias.assign([0.3, -0.1, 0.2])
    cfg = pipeline.ConvertConfig(trainable="head", input_range=(-1.0, 1.0))
    rep = np.random.default_rng(0).uniform(-1, 1, (16, 4, 4, 1)).astype(np.float32)
    path = tmp_path_factory.mktemp("tiny") / "tiny.tflite"
    pipeline.save(path, *pipeline.convert_keras_model(model, cfg, representative=rep))
    return path


def _tool(*args):
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "memory.py"), *args], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    return out.returncode, out.stdout + out.stderr


# ---- the graph ------------------------------------------------------------------------------------

def test_arena_of_tiny_model_hand_computed(tiny_path):
    # infer, non-constant tensors: x 16B, conv out 32B, reshape out 32B, logits 3B (B = batch).
    # live at op0: x + conv = 48B; op1: conv + reshape = 64B; op2: reshape + logits = 35B.
    for batch in (1, 5):
        a = memory.arena(tiny_path, "infer", batch)
        assert a.peak_live == 64 * batch and a.total == 83 * batch
    # forward adds the kernel input w_head (96 bytes, no batch dim), live for the whole graph.
    assert memory.arena(tiny_path, "forward", 1) == memory.Arena(peak_live=96 + 64, total=96 + 83)
    assert memory.arena(tiny_path, "forward", 5) == memory.Arena(peak_live=96 + 64 * 5, total=96 + 83 * 5)


def test_constants_are_counted_once_per_buffer(tiny_path):
    # forward constants: conv filter 18 + conv bias 2*4 + reshape shape 2*4 + head bias 3*4 = 46;
    # infer also has the head kernel (96). The buffers are shared between the two subgraphs.
    assert memory.constant_bytes(tiny_path, ["forward"]) == 46
    assert memory.constant_bytes(tiny_path, ["infer"]) == 46 + 96
    assert memory.constant_bytes(tiny_path, ["forward", "infer"]) == 46 + 96


# ---- the breakdown --------------------------------------------------------------------------------

def test_infer_breakdown(tiny_path):
    b = memory.estimate(tiny_path, 5, "infer")
    assert (b.weights, b.activations, b.arena_sum) == (142, 64 * 5, 83 * 5)
    assert b.total == 142 + 320
    assert b.as_dict()["total"] == b.total and b.model_file == tiny_path.stat().st_size


def test_ff_breakdown_hand_computed(tiny_path):
    b = memory.estimate(tiny_path, 1, "ff-w8", m=3)
    assert b.weights == 46                    # frozen constants of `forward`
    assert b.trainable == P                   # the int8 kernel (w8: it is the master copy)
    assert b.master == 0
    assert b.perturbation == 1 * P + 2 * P    # z_q of one probe at a time (int8) + w+ and w- (int8)
    assert b.gradient == (4 + 4 + 4 + 4) * P  # S int32, g float32, lr*g float32, update int32
    assert b.masks == 0 and b.optimizer_state == 0
    assert b.scratch == 4 * 8 * P             # 4 int64 work arrays of the largest (only) tensor
    assert b.activations == 96 + 64           # the forward arena at batch 1
    assert b.conv_scratch == 0                # xnnpack runs the frozen conv; the head is no conv
    assert b.total == 46 + 96 + 3 * P + 16 * P + 32 * P + 160 == 5390 - 2 * P
    sparse = memory.estimate(tiny_path, 1, "ff-w8", m=3, sparsity=0.9)
    assert sparse.masks == P and sparse.total == b.total + P   # one bool per weight; the rest stays dense
    assert memory.estimate(tiny_path, 1, "ff-w8", m=1).perturbation == 1 * P + 2 * P


def test_ff_w16_adds_the_int16_master_copy(tiny_path):
    for batch in (1, 32):
        w8 = memory.estimate(tiny_path, batch, "ff-w8")
        w16 = memory.estimate(tiny_path, batch, "ff-w16")
        assert w16.master - w8.master == 2 * P                  # exactly 2 bytes per trainable weight
        # the trainer also builds w+ and w- in the master's int16 (+1 byte each) and rounds one
        # candidate to int8 for the engine per loss evaluation (+1 byte): 2 + 2 + 1 = 5 bytes in all
        assert w16.perturbation - w8.perturbation == 3 * P
        assert w16.total - w8.total == 5 * P


def test_activations_scale_linearly_with_batch(tiny_path, block_model_path):
    for path in (tiny_path, block_model_path):
        for mode in MODES:
            a = [memory.estimate(path, b, mode) for b in (4, 8, 12)]
            for field in ("activations", "frozen_activations", "arena_sum"):
                v = [getattr(x, field) for x in a]
                assert v[2] - v[1] == v[1] - v[0], (path.name, mode, field, v)
            assert a[0].weights == a[2].weights and a[0].trainable == a[2].trainable
        # infer has no batch-independent tensor: its arena is proportional to the batch
        assert memory.estimate(path, 12, "infer").activations == 3 * memory.estimate(path, 4, "infer").activations


def test_bp_breakdown_hand_computed(tiny_path):
    # trainable: head kernel 96 + its bias 3 = 99 float32 params; frozen: conv filter 18 + bias 2.
    # kept for backward: the head's input [B,32] and output [B,3] = 35B floats.
    # frozen part (conv, reshape): live at conv = x 16B + conv out 32B = 48B floats (the reshape
    # output is the head's input, counted as kept).
    for batch in (1, 5):
        b = memory.estimate(tiny_path, batch, "bp-fp32", optimizer="sgd")
        assert b.trainable_params == 99
        assert (b.weights, b.trainable, b.gradient, b.optimizer_state) == (4 * 20, 4 * 99, 4 * 99, 0)
        assert b.activations == 4 * 35 * batch
        assert b.frozen_activations == 4 * 48 * batch
        assert b.total == 80 + 396 + 396 + 140 * batch + 192 * batch
        q = memory.estimate(tiny_path, batch, "bp-qat", optimizer="sgd")
        assert q.activations == 2 * b.activations            # before and after each fake quant
        assert q.master == 4 * P                             # fake-quantized copy of the kernel
    assert memory.estimate(tiny_path, 1, "bp-fp32", optimizer="momentum").optimizer_state == 4 * 99
    assert memory.estimate(tiny_path, 1, "bp-fp32", optimizer="adam").optimizer_state == 2 * 4 * 99


def test_builtin_engine_adds_im2col(tiny_path):
    # builtin CONV_2D 3x3: im2col [B*4*4, 3*3*1] int8 = 144 bytes/example, a temporary of op0:
    # infer's op0 then holds 48B + 144B = 192B > op1's 64B, so the peak grows by 128B; the GEMM
    # library's packed copy of the im2col matrix adds 144B more.
    for batch in (1, 5):
        b = memory.estimate(tiny_path, batch, "infer", engine="builtin")
        assert b.activations == 64 * batch and b.conv_scratch == (128 + 144) * batch
        # forward: op0 holds 96 + 48B + 144B, op1 96 + 64B: the same increase
        assert memory.estimate(tiny_path, batch, "ff-w8", engine="builtin").conv_scratch == (128 + 144) * batch


def test_prefix_cache(tiny_path):
    from tflite_fg.model import PREFIX, SUFFIX
    meta = memory._parse(tiny_path, None)
    if not (PREFIX in meta.subgraphs and SUFFIX in meta.subgraphs):
        # a model without prefix/suffix runs `forward` whatever the cache asks
        assert memory.estimate(tiny_path, 5, "ff-w8", cache="batch").cache == "none"
        pytest.skip("this converter writes no prefix/suffix signatures")
    # prefix: x 16B -> conv 32B -> reshape 32B = the feature h0 (32 bytes/example);
    # suffix: h0 32B + w_head 96 + logits 3B, one op.
    b = memory.estimate(tiny_path, 5, "ff-w8", cache="batch")
    assert b.cache == "batch"
    assert b.activations == 96 + 35 * 5          # the suffix arena
    assert b.frozen_activations == 64 * 5        # the prefix arena (peak at the reshape)
    assert b.features == 32 * 5
    assert b.weights == 46                       # prefix + suffix constants: the same buffers as forward
    d = memory.estimate(tiny_path, 5, "ff-w8", cache="dataset", n_train=10)
    assert d.frozen_activations == 64 * 5        # the prefix ran one training batch at a time
    assert d.features == 32 * (10 + 5)           # the cached set and the step's gathered batch
    assert memory.estimate(tiny_path, 5, "ff-w8", cache="auto", n_train=10).cache == "dataset"
    assert memory.estimate(tiny_path, 5, "ff-w8", cache="none").activations == 96 + 64 * 5


def test_backprop_needs_more_than_ff_on_resnet8(block_model_path):
    ff = memory.estimate(block_model_path, 32, "ff-w8")
    assert ff.trainable_params == 57_984          # conv2d_6, conv2d_7, conv2d_8, head
    for mode in ("bp-fp32", "bp-qat"):
        bp = memory.estimate(block_model_path, 32, mode)
        assert bp.total > ff.total and bp.activations > ff.activations, (mode, bp.as_dict(), ff.as_dict())
        assert bp.trainable_params == 57_984 + 64 + 64 + 64 + 10   # + the biases of those four layers
    assert memory.estimate(block_model_path, 32, "bp-qat").total > memory.estimate(block_model_path, 32, "bp-fp32").total
    infer = memory.estimate(block_model_path, 32, "infer")
    assert infer.total < ff.total


def test_bad_models_and_arguments_say_what_to_do(tiny_path, tmp_path):
    with pytest.raises(FileNotFoundError, match="convert"):
        memory.estimate(tmp_path / "missing.tflite", 1, "infer")
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(tiny_path.read_bytes()[:3000])
    with pytest.raises(ModelError, match="corrupt or truncated"):
        memory.estimate(corrupt, 1, "infer")
    with pytest.raises(ModelError, match="not a TFLite"):
        memory.estimate(b"not a model at all", 1, "infer")
    from converters.keras_compat import keras, tf
    x = keras.Input((4,))
    float_bytes = tf.lite.TFLiteConverter.from_keras_model(keras.Model(x, keras.layers.Dense(2)(x))).convert()
    with pytest.raises(ModelError, match="not a tflite_fg training model"):
        memory.estimate(float_bytes, 1, "infer")
    with pytest.raises(ValueError, match="batch"):
        memory.estimate(tiny_path, 0, "infer")
    with pytest.raises(ValueError, match="mode"):
        memory.estimate(tiny_path, 1, "ff-w4")
    with pytest.raises(ValueError, match="optimizer"):
        memory.estimate(tiny_path, 1, "bp-fp32", optimizer="rmsprop")
    with pytest.raises(ValueError, match="n_train"):
        memory.estimate(tiny_path, 1, "ff-w8", cache="dataset")
    # the bytes without their metadata: the kernels are found as forward's w_* inputs
    assert memory.estimate(tiny_path.read_bytes(), 1, "ff-w8").trainable_params == P


# ---- measured -------------------------------------------------------------------------------------

def test_measured_rss_helpers():
    assert memory.reset_peak_rss() is True           # Linux: /proc/self/clear_refs resets VmHWM
    rss = memory.rss_bytes()                         # read first: the peak can only be >= an earlier RSS
    assert memory.peak_rss_bytes() >= rss > 0
    added = memory.measure_added(lambda: np.ones(64 << 20, np.uint8).sum())   # written, so resident
    assert added >= 60 << 20, added
    assert memory.measure_added(lambda: None) < 8 << 20
    with memory.track_peak() as usage:
        block = np.ones(16 << 20, np.uint8)
    assert usage.reset and usage.added >= 15 << 20
    del block


# ---- the command line -----------------------------------------------------------------------------

def test_cli_prints_the_table_and_writes_json(tiny_path, tmp_path):
    out = tmp_path / "memory.json"
    rc, log = _tool(f"--model={tiny_path}", "--batch=5", f"--json={out}")
    assert rc == 0, log
    for word in ("infer", "ff-w8", "ff-w16", "bp-fp32", "bp-qat", "total", "ratio to inference",
                 "added over inference", "96 trainable int8 weights"):
        assert word in log, (word, log)
    data = json.loads(out.read_text())
    assert data["modes"]["ff-w8"]["total"] == memory.estimate(tiny_path, 5, "ff-w8").total
    assert data["ratio_to_infer"]["infer"] == 1.0


def test_cli_errors_are_one_clear_line(tiny_path, tmp_path):
    rc, log = _tool(f"--model={tmp_path / 'missing.tflite'}")
    assert rc != 0 and "not found" in log and "convert" in log and "Traceback" not in log, log
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"\0" * 64)
    rc, log = _tool(f"--model={corrupt}")
    assert rc != 0 and "not a TFLite" in log and "Traceback" not in log, log
    rc, log = _tool(f"--model={tiny_path}", "--modes=infer,ff-w4")
    assert rc != 0 and "ff-w4" in log and "Traceback" not in log, log
    rc, log = _tool(f"--model={tiny_path}", "--batch=0")
    assert rc != 0 and "--batch" in log and "Traceback" not in log, log
