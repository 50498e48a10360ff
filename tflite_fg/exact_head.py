"""The forward-only exact head: the cross-entropy gradient of the last dense layer in integers.

For logits = W x + b and L = mean_b CE(softmax(logits_b), y_b), dL/dW = (1/B) (softmax - onehot)^T x:
a closed form of what one forward pass returns (the logits and the head's input x, the converter's
`head_in` output). No backward graph and no stored activations: it is backprop through one layer
done by hand, so it is reported as its own method ("FF + exact head"), never as plain FF.
(ElasticZO, arXiv 2501.04287, and "Poor Man's Training on MCUs", arXiv 2411.05873, train the last
layer exactly this way and the rest by zeroth order.)

Everything is integer and so portable bit for bit (the Java core repeats it):
  * softmax of the int8 logits q through a 256-entry table T[k] = round(2^16 exp(-s_out k)),
    k = max(q) - q_j, built once per model (float64 exp, then rounded: exact across runtimes unless
    a value lies within 1e-11 of a rounding tie; the golden vectors check the tables agree);
  * the error e = round(2^15 T[k_j] / sum T) - 2^15 [j = y], an int32 on the scale 2^-15;
  * G = e^T (x_q - zp_x), an exact int64 sum over the batch;
  * one float32 multiply, g = float32(G) * float32(s_x / (s_w B 2^15)): the gradient in weight LSBs
    per unit of a float-space SGD learning rate (w_q <- w_q - round(lr g) is SGD with rate lr on the
    float weights, whatever the tensor's scale s_w).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from tflite_fg.estimators import Estimator, LossFn, Params

ERROR_BITS = 15
TABLE_BITS = 16


class HeadBatch(NamedTuple):
    """What one unperturbed forward pass of a mini-batch gives the exact head."""

    logits: np.ndarray    # int8 [B, C]
    head_in: np.ndarray   # int8 [B, ..., C_in] (the dense layer's input as the op reads it)
    labels: np.ndarray    # int [B]
    loss: float           # the batch loss at these weights (free: from the same logits)


class HeadQuant(NamedTuple):
    """The fixed quantization the gradient needs: output scale, the head input's, the kernel's."""

    output_scale: float
    input_scale: float
    input_zero_point: int
    kernel_scale: float


def softmax_table(output_scale: float) -> np.ndarray:
    """T[k] = round(2^16 exp(-output_scale k)), k = 0..255 (int64): exp of every possible logit gap."""
    return np.array([round(math.ldexp(math.exp(-output_scale * k), TABLE_BITS)) for k in range(256)], np.int64)


def softmax_error(logits: np.ndarray, labels: np.ndarray, table: np.ndarray) -> np.ndarray:
    """e = softmax - onehot on the scale 2^-ERROR_BITS, int64 [B, C]; the softmax rounds half up."""
    q = np.asarray(logits, np.int64)
    t = table[q.max(axis=1, keepdims=True) - q]
    total = t.sum(axis=1, keepdims=True)
    p = ((t << (ERROR_BITS + 1)) + total) // (2 * total)
    p[np.arange(len(q)), np.asarray(labels, np.int64)] -= 1 << ERROR_BITS
    return p


def head_gradient(batch: HeadBatch, quant: HeadQuant, table: np.ndarray) -> np.ndarray:
    """g [C, C_in] float32 (TFLite FullyConnected layout): dL/dW in kernel LSBs per unit of float lr."""
    e = softmax_error(batch.logits, batch.labels, table)
    n = len(e)
    x = np.asarray(batch.head_in, np.int64).reshape(n, -1) - quant.input_zero_point
    g_int = e.T @ x  # exact: |e| <= 2^15, |x| <= 255, so each sum over B stays below B * 2^23, far from 2^63
    scale = np.float32(quant.input_scale / (quant.kernel_scale * n * (1 << ERROR_BITS)))
    return g_int.astype(np.float32) * scale


def exact_head(inner: Estimator | None, quant: HeadQuant, mask: np.ndarray | None = None) -> Estimator:
    """The last tensor's gradient exactly (one extra forward pass), the others by `inner` (whose
    sampler must leave the head unperturbed: build.py gives it a support without the head);
    inner=None trains the head alone (linear probing: no probes at all). `mask` (bool, the kernel's
    shape): only those head weights change (a sparse mask or a neuron selection).

    The head batch comes from loss_fn.head(params): objective.BatchLoss provides it, and the trainer
    passes it on the engine copy of the master weights (trainer.OnEngine)."""
    table = softmax_table(quant.output_scale)

    def init(params: Params) -> Any:
        return inner.init(params) if inner is not None else ()

    def estimate(loss_fn: LossFn, params: Params, state: Any, seed: int, step: int):
        if not hasattr(loss_fn, "head"):
            raise TypeError("the exact head needs a loss with .head(params) (objective.BatchLoss)")
        if inner is not None:
            grads, state, info = inner.estimate(loss_fn, params, state, seed, step)
        else:
            grads, info = [np.zeros(np.shape(w), np.float32) for w in params], {"losses": [], "forward_passes": 0}
        batch = loss_fn.head(params)
        g = head_gradient(batch, quant, table).reshape(np.shape(params[-1]))
        grads = list(grads[:-1]) + [g if mask is None else np.where(mask, g, np.float32(0))]
        info = {**info, "losses": list(info["losses"]) + [batch.loss], "forward_passes": info["forward_passes"] + 1}
        return grads, state, info

    return Estimator(init, estimate)
