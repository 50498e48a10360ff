"""The `probe` signature: forward's logits plus each trainable layer's output, on real models and data."""
import dataclasses

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from converters import graph_head, graph_probe, pipeline
from converters.keras_compat import keras
from tflite_fg import flatbuf
from tflite_fg.metadata import read_metadata, sha256_bytes, write_model
from tflite_fg.model import HEAD_IN, INFER, FgModel, ModelError


def _channels(op: str, shape: tuple[int, ...]) -> int:
    """Output channels of a trainable kernel in TFLite layout: Conv2D OHWI, Dense [out, in], depthwise [1, H, W, C]."""
    return shape[3] if op == "DepthwiseConv2D" else shape[0]


def _random_params(model: FgModel, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(-127, 128, t.shape).astype(np.int8) for t in model.meta.trainable]


def _probe_logits(model: FgModel, xq: np.ndarray, params) -> np.ndarray:
    runner = model.interpreter.get_signature_runner(graph_probe.PROBE)
    kernels = {t.input_name: p for t, p in zip(model.meta.trainable, params)}
    return runner(**{model.meta.input_name: xq}, **kernels)[model.meta.output_name]


def _tiny_model(tmp_path) -> FgModel:
    """x -> conv a -> depthwise dw -> conv b -> flatten -> head, every layer trainable: all three op kinds."""
    x = keras.Input((8, 8, 2), name="x")
    y = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="a")(x)
    y = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu", name="dw")(y)
    y = keras.layers.Conv2D(6, 1, name="b")(y)
    y = keras.layers.Dense(3, name="head")(keras.layers.Flatten(name="flat")(y))
    keras.utils.set_random_seed(0)
    rep = np.random.default_rng(0).uniform(-1, 1, (32, 8, 8, 2)).astype(np.float32)
    cfg = pipeline.ConvertConfig(trainable="all", input_range=(-1.0, 1.0))
    path = tmp_path / "tiny.tflite"
    pipeline.save(path, *pipeline.convert_keras_model(keras.Model(x, y), cfg, rep))
    return FgModel(path, engine="builtin")


def _strip_probe(src, dst):
    """`src` as converter version 2 wrote it: the same graph without the `probe` signature (and its
    subgraph) and without the `head_in` outputs (version 4), with metadata whose infer offsets follow
    the repacked file."""
    data, meta = src.read_bytes(), read_metadata(src)
    m = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    [sig] = [s for s in m.signatureDefs if s.signatureKey.decode() == graph_probe.PROBE]
    assert sig.subgraphIndex == len(m.subgraphs) - 1   # added last: no other signature's index moves
    m.signatureDefs.remove(sig)
    m.subgraphs.pop()
    for other in m.signatureDefs:  # head_in was appended last to each signature's and subgraph's outputs
        if other.outputs[-1].name.decode() == HEAD_IN:
            other.outputs.pop()
            m.subgraphs[other.subgraphIndex].outputs = m.subgraphs[other.subgraphIndex].outputs[:-1]
    builder = flatbuffers.Builder(len(data))
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    stripped = bytes(builder.Output())

    def infer_consts(b):
        fb = flatbuf.parse(b)
        return flatbuf.int8_constants(fb, flatbuf.signature_subgraph(fb, INFER))
    index_of = {c.offset: c.index for c in infer_consts(data)}
    offset_of = {c.index: c.offset for c in infer_consts(stripped)}
    trainable = tuple(dataclasses.replace(t, infer_offset=offset_of[index_of[t.infer_offset]]) for t in meta.trainable)
    meta = dataclasses.replace(meta, model_sha256=sha256_bytes(stripped), trainable=trainable,
                               source={**meta.source, "converter_version": 2})
    write_model(dst, stripped, meta)
    return dst


@pytest.mark.parametrize("engine", ["builtin", "xnnpack"])
@pytest.mark.parametrize("which", ["head", "block"])
def test_probe_logits_equal_forward_bit_for_bit(which, engine, head_model_path, block_model_path, fewshot_task):
    model = FgModel(head_model_path if which == "head" else block_model_path, engine=engine)
    assert model.has_probe
    sigs = model.interpreter.get_signature_list()
    kernels = [t.input_name for t in model.meta.trainable]
    assert sorted(sigs["probe"]["inputs"]) == sorted(sigs["forward"]["inputs"]) == sorted(["x", *kernels])
    assert sorted(sigs["probe"]["outputs"]) == sorted(["logits", HEAD_IN, *(f"n{i}" for i in range(len(kernels)))])
    xq = model.quantize_input(fewshot_task.x_test[:64])
    for params in (model.initial_params(), _random_params(model, 0)):
        np.testing.assert_array_equal(_probe_logits(model, xq, params), model.forward(xq, params))


def test_neuron_outputs_of_the_residual_block(block_model_path, fewshot_task):
    model = FgModel(block_model_path, engine="builtin")
    xq = model.quantize_input(fewshot_task.x_test[:40])
    params = model.initial_params()
    outs = model.neuron_outputs(xq, params)
    assert len(outs) == len(model.meta.trainable) == 4
    for out, t in zip(outs, model.meta.trainable):
        assert out.dtype == np.float32 and out.shape[0] == len(xq) and out.shape[-1] == _channels(t.op, t.shape)
    assert [o.shape for o in outs] == [(40, 8, 8, 64), (40, 8, 8, 64), (40, 8, 8, 64), (40, 10)]
    # conv2d_6 has a fused ReLU: its output never goes below 0 (its zero point dequantizes to exactly 0)
    assert outs[0].min() == 0 and outs[0].max() > 0
    # the head produces the logits: its neuron output is the dequantized logits, bit for bit
    np.testing.assert_array_equal(outs[-1], model.dequantize_logits(model.forward(xq, params)))
    # batching changes nothing (each example's outputs depend on that example only)
    for a, b in zip(model.neuron_outputs(xq, params, batch_size=7), outs):
        np.testing.assert_array_equal(a, b)


def _assert_causal(model, xq, params, base, seed):
    """Changing kernel j changes layer j's outputs and leaves every earlier layer's bit-identical."""
    other = _random_params(model, seed)
    for j in range(len(params)):
        changed = [other[j] if i == j else p for i, p in enumerate(params)]
        outs = model.neuron_outputs(xq, changed)
        assert np.any(outs[j] != base[j]), j
        for i in range(j):
            np.testing.assert_array_equal(outs[i], base[i])


def test_changing_a_kernel_changes_its_layer_and_nothing_before(block_model_path, fewshot_task):
    model = FgModel(block_model_path, engine="builtin")
    xq = model.quantize_input(fewshot_task.x_test[:16])
    params = model.initial_params()
    _assert_causal(model, xq, params, model.neuron_outputs(xq, params), 1)


def test_all_three_op_kinds(tmp_path):
    """Conv2D, DepthwiseConv2D and FullyConnected outputs: channel counts from the kernel layouts,
    causality, and the last layer's output = the logits."""
    model = _tiny_model(tmp_path)
    assert [t.op for t in model.meta.trainable] == ["Conv2D", "DepthwiseConv2D", "Conv2D", "Dense"]
    xq = model.quantize_input(np.random.default_rng(1).uniform(-1, 1, (9, 8, 8, 2)).astype(np.float32))
    params = model.initial_params()
    outs = model.neuron_outputs(xq, params, batch_size=4)
    assert [o.shape for o in outs] == [(9, 8, 8, 4), (9, 4, 4, 4), (9, 4, 4, 6), (9, 3)]
    assert [o.shape[-1] for o in outs] == [_channels(t.op, t.shape) for t in model.meta.trainable]
    np.testing.assert_array_equal(outs[-1], model.dequantize_logits(model.forward(xq, params)))
    np.testing.assert_array_equal(_probe_logits(model, xq, params), model.forward(xq, params))
    _assert_causal(model, xq, params, outs, 2)


def test_probe_shares_constant_buffers(block_model_path):
    """probe reuses forward's constants by buffer index: the file grows by a tensor table only."""
    model = FgModel(block_model_path)
    fb = flatbuf.parse(model.model_bytes)
    offsets = lambda key: sorted(c.offset for c in flatbuf.int8_constants(fb, flatbuf.signature_subgraph(fb, key)))  # noqa: E731
    assert offsets("probe") == offsets("forward")


def test_add_probe_refusals(block_model_path, tmp_path):
    with pytest.raises(ValueError, match="already has a 'probe' signature"):
        graph_probe.add_probe(FgModel(block_model_path).model_bytes, ["w_head"])
    old = FgModel(_strip_probe(block_model_path, tmp_path / "v2.tflite"))
    with pytest.raises(ValueError, match=r"\['w_nope'\] are not inputs of 'forward'"):
        graph_probe.add_probe(old.model_bytes, ["w_head", "w_nope"])
    with pytest.raises(ValueError, match="'x' of 'forward' is read by a CONV_2D op, not as the filter"):
        graph_probe.add_probe(old.model_bytes, ["x"])
    with pytest.raises(KeyError, match="no 'training' signature"):
        graph_probe.add_probe(old.model_bytes, ["w_head"], forward_key="training")
    # the refusals leave a model that takes the probe: re-adding it gives back the converter's file
    kernels = [t.input_name for t in old.meta.trainable]
    assert graph_head.add_head_input(graph_probe.add_probe(old.model_bytes, kernels), kernels[-1]) == \
        FgModel(block_model_path).model_bytes


def test_neuron_outputs_of_a_model_without_probe(block_model_path, fewshot_task, tmp_path):
    new = FgModel(block_model_path)
    old = FgModel(_strip_probe(block_model_path, tmp_path / "v2.tflite"))
    assert not old.has_probe and old.has_prefix and not old.has_head_input and new.has_head_input
    with pytest.raises(ModelError, match="no 'head_in' output"):
        old.head_quant()  # --exact_head on an old conversion: one line that says to reconvert
    assert set(old.interpreter.get_signature_list()) == {"forward", "infer", "prefix", "suffix"}
    params = old.initial_params()
    for a, b in zip(params, new.initial_params()):
        np.testing.assert_array_equal(a, b)
    xq = old.quantize_input(fewshot_task.x_test[:4])
    np.testing.assert_array_equal(old.forward(xq, params), new.forward(xq, params))  # still trains
    with pytest.raises(ModelError, match="no 'probe' signature.*converter version 3.*tools/convert.py"):
        old.neuron_outputs(xq, params)
    with pytest.raises(ValueError, match="must be int8"):
        new.neuron_outputs(xq, [p.astype(np.int16) for p in params])
    with pytest.raises(ValueError, match="empty batch"):
        new.neuron_outputs(xq[:0], params)
