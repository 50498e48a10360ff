"""Golden runs of the Python trainer for the Java core's bit-exactness test (android_demo/core).

  python tools/java_golden.py          # rewrites tests/golden/trainer_golden.json

Each case runs the runtime's own recipe (tflite_fg.build + trainer.fit: Gaussian Sign-m-SPSA,
anchored arithmetic, w8 or w16; plain, or with sparse-update masks, stochastic update rounding,
Rademacher/Binomial z, momentum-guided sampling, kernel-wise normalization, the paper's integer
arithmetic, schedules, sharpness-aware steps, stochastic engine rounding, the SPSA estimator, a
neuron-selection support, the exponential average of the gradient estimates (grad_average), the
exact head and block-coordinate probes) on small int8 tensors, with a loss that is a fixed function of the engine's int8
kernels, and records every loss value in call order, the engine kernels of each call, and the
master and engine weights after each step. Exact-head cases also record each step's head pass
(`head_calls`): its engine kernels and the synthetic int8 logits and head input, integer functions
of those kernels (`_SyntheticLoss.head`), with the labels and the `head_quant` the gradient uses;
one case trains the head alone (no probes). Java replays the losses and head passes and must
reproduce every kernel bit for bit; tests/test_java_golden.py checks that this file still matches
the Python runtime. `selections` holds static, random and magnitude selections and five rounds
of NEq velocity selection on synthetic layer outputs; `exact_head` the exact head's integer
softmax error and gradient on random int8 logits and head inputs.
"""
import _paths  # noqa: F401

import json
import pathlib

import numpy as np

import _cli

from tflite_fg import build, exact_head, losses, selection, trainer
from tflite_fg.config import TrainConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "golden" / "trainer_golden.json"
SHAPES = [(4, 3), (2, 5)]
CASES = [  # (precision, seed, m, eps_lsb, lr per tensor, steps, TrainConfig options)
    ("w8", 7, 3, 2, (0.8, 2.5), 6, {}),
    ("w16", 11, 2, 1.5, (0.3, 0.7), 6, {}),
    ("w8", 5, 3, 2, (1.2, 2.5), 5, {"mask": "topk", "sparsity": 0.5}),
    ("w16", 9, 2, 1.5, (0.3, 0.7), 5, {"mask": "random", "sparsity": 0.7, "update_rounding": "stochastic"}),
    ("w8", 3, 2, 3, (0.6, 1.7), 5, {"mask": "threshold", "mask_threshold_lsb": 60.0,
                                    "update_rounding": "stochastic"}),
    ("w16", 4, 3, 1.5, (0.3, 0.7), 6, {"momentum_alpha": 0.5, "momentum_beta_min": 0.3, "momentum_decay_steps": 3}),
    ("w16", 6, 2, 2, (0.4, 0.9), 5, {"kernel_norm": True, "distribution": "rademacher"}),
    ("w8", 8, 3, 2, (0.8, 2.5), 5, {"kernel_norm": True, "distribution": "binomial", "mask": "topk",
                                    "sparsity": 0.3, "momentum_alpha": 0.7, "momentum_decay_steps": 2}),
    ("w16", 12, 3, 1.5, (0.3, 0.7), 5, {"arithmetic": "paper"}),
    ("w8", 13, 2, 2, (1.5, 3.0), 6, {"arithmetic": "paper", "update_rounding": "stochastic", "schedule": "step",
                                     "schedule_every": 2, "schedule_factor": 0.5}),
    ("w16", 14, 2, 1.5, (0.3, 0.7), 6, {"schedule": "cosine", "schedule_final": 0.1}),
    ("w8", 15, 2, 2, (0.8, 2.5), 5, {"sam_rho": 1.0}),
    ("w16", 16, 2, 1.5, (0.3, 0.7), 5, {"engine_rounding": "stochastic", "sam_rho": 2.0, "momentum_alpha": 0.5,
                                        "momentum_decay_steps": 2}),
    ("w16", 17, 3, 1.5, (0.05, 0.1), 5, {"estimator": "spsa"}),
    ("w8", 18, 2, 2, (0.8, 2.5), 5, {"support_budget": 0.5}),
    ("w16", 19, 2, 1.5, (0.3, 0.7), 5, {"support_budget": 0.3, "momentum_alpha": 0.5, "momentum_decay_steps": 2,
                                        "kernel_norm": True}),
    ("w8", 20, 3, 2, (0.8, 2.5), 6, {"grad_average": 0.9}),
    ("w16", 21, 2, 1.5, (0.3, 0.7), 6, {"grad_average": 0.9, "mask": "topk", "sparsity": 0.5,
                                        "update_rounding": "stochastic"}),
    ("w16", 22, 2, 1.5, (1.0, 2.0), 6, {"grad_average": 0.5, "momentum_alpha": 0.5, "momentum_decay_steps": 3,
                                        "schedule": "cosine", "schedule_final": 0.2}),
    # the exact head: lr[-1] is the head's float SGD rate (tools/train.py --head_lr)
    ("w16", 23, 2, 1.5, (0.3, 0.3), 6, {"exact_head": True}),
    ("w8", 24, 3, 2, (0.8, 0.3), 6, {"exact_head": True, "grad_average": 0.9, "mask": "topk", "sparsity": 0.5,
                                      "update_rounding": "stochastic", "sam_rho": 1.0}),
    ("w16", 25, 2, 1.5, (0.3, 0.3), 5, {"exact_head": True, "support_budget": 0.5, "momentum_alpha": 0.5,
                                         "momentum_decay_steps": 2, "engine_rounding": "stochastic",
                                         "kernel_norm": True}),
    ("w16", 26, 2, 1.5, (0.3,), 6, {"exact_head": True, "head_only": True, "grad_average": 0.8}),
    # block-coordinate probes: each probe perturbs one tensor (the FF rates scaled by about m)
    ("w16", 27, 3, 1.5, (0.9, 2.1), 6, {"block_coordinate": True}),
    ("w8", 28, 2, 2, (1.6, 5.0), 6, {"block_coordinate": True, "mask": "topk", "sparsity": 0.5, "grad_average": 0.9}),
    ("w16", 29, 2, 1.5, (0.6, 0.3), 6, {"block_coordinate": True, "exact_head": True}),
    ("w8", 30, 2, 2, (1.6, 5.0), 5, {"block_coordinate": True, "support_budget": 0.5}),
    # the exact head trained by Adam (lr[-1] in int8 LSBs per step); grad_average then averages the body only
    ("w16", 32, 2, 1.5, (0.3, 3.0), 6, {"exact_head": True, "head_optimizer": "adam"}),
    ("w8", 33, 2, 2, (0.8, 2.0), 6, {"exact_head": True, "head_optimizer": "adam", "grad_average": 0.9,
                                      "update_rounding": "stochastic", "mask": "topk", "sparsity": 0.5}),
    ("w16", 34, 2, 1.5, (1.0,), 7, {"exact_head": True, "head_optimizer": "adam", "head_only": True,
                                     "schedule": "cosine", "schedule_final": 0.1}),
    ("w16", 35, 3, 1.5, (0.9, 3.0), 6, {"exact_head": True, "head_optimizer": "adam", "block_coordinate": True}),
    # three tensors, so that SAM's ascent index 2**64 - 2 cycles differently from -2 (mod 3), with
    # momentum's second draw inside the block wrapper
    ("w16", 31, 3, 1.5, (0.9, 0.9, 2.1), 6, {"block_coordinate": True, "tensors": 3, "sam_rho": 2.0,
                                              "momentum_alpha": 0.5, "momentum_decay_steps": 2}),
]
HARNESS_OPTIONS = ("support_budget", "head_only", "tensors")  # options of this script, not TrainConfig fields
SHAPES3 = [(4, 3), (3, 4), (2, 5)]  # "tensors": 3
# The exact-head cases' synthetic head pass: a batch of 4 rows of 5 head inputs (the head kernel is
# [2 classes, 5]), its labels, and the quantization its gradient uses.
HEAD_QUANT = exact_head.HeadQuant(output_scale=0.1, input_scale=0.01, input_zero_point=-3, kernel_scale=0.01)
HEAD_X = np.random.default_rng(3).integers(-60, 61, (4, 5)).astype(np.int64)
HEAD_LABELS = np.array([0, 1, 1, 0])


def _initial(head_only: bool = False, shapes: list[tuple[int, ...]] = SHAPES) -> list[np.ndarray]:
    r = np.random.default_rng(0)
    params = [r.integers(-120, 121, s).astype(np.int8) for s in shapes]
    params[0][0, :] = [127, -127, 126]  # saturation at the edges of the int8 range
    if head_only:  # the head alone, with the same edge values
        params = [params[1].copy()]
        params[0][0, :3] = [127, -127, 126]
    return params


def _ints(a: np.ndarray) -> list[int]:
    return np.asarray(a).astype(int).ravel().tolist()


class _SyntheticLoss:
    """The loss of the engine kernels (squared distance to 40), and for the exact head `head`: the
    HeadBatch of a pass whose int8 head input and logits are integer functions of the kernels
    (head_in = HEAD_X shifted by the last body kernel values mod 5; logits = ((x - zp) W^T) >> 8).
    Every call is recorded for the Java replay."""

    def __init__(self):
        self.calls, self.head_calls = [], []

    def __call__(self, engine) -> float:
        value = float(sum(np.sum((k.astype(np.float64) - 40.0) ** 2) for k in engine) / 100.0)
        self.calls.append({"kernels": [_ints(k) for k in engine], "loss": value})
        return value

    def head(self, engine) -> exact_head.HeadBatch:
        shift = engine[0].astype(np.int64).ravel()[-5:] % 5 - 2 if len(engine) > 1 else 0
        x = np.clip(HEAD_X + shift, -128, 127)
        w = engine[-1].astype(np.int64)
        logits = np.clip((x - HEAD_QUANT.input_zero_point) @ w.T >> 8, -128, 127).astype(np.int8)
        x = x.astype(np.int8)
        loss = losses.softmax_cross_entropy(logits.astype(np.float32) * np.float32(HEAD_QUANT.output_scale),
                                            HEAD_LABELS)
        self.head_calls.append({"kernels": [_ints(k) for k in engine], "logits": _ints(logits), "head_in": _ints(x),
                                "labels": HEAD_LABELS.tolist(), "loss": loss})
        return exact_head.HeadBatch(logits, x, HEAD_LABELS, loss)


def run_case(precision: str, seed: int, m: int, eps: float, lr: tuple[float, ...], steps: int,
             options: dict) -> dict:
    loss = _SyntheticLoss()
    cfg_options = {k: v for k, v in options.items() if k not in HARNESS_OPTIONS}
    cfg = TrainConfig(seed=seed, steps=steps, batch_size=1, m=m, eps_lsb=eps, lr=lr, precision=precision, **cfg_options)
    start = _initial(options.get("head_only", False), SHAPES3 if options.get("tensors") == 3 else SHAPES)
    shapes = [p.shape for p in start]
    space = build.build_space(cfg)
    support = None
    if "support_budget" in options:  # a random neuron selection (output channels along axis 0)
        lay = selection.layout(["a", "b"], shapes, [0, 0])
        chosen = selection.fill(lay, selection.random_order(lay, seed, 0),
                                selection.budget_params(lay, options["support_budget"]))
        support = selection.element_masks(chosen, shapes, [0, 0])
    est = build.build_estimator(cfg, start, space, support, HEAD_QUANT if cfg.exact_head else None)
    tx = build.build_transform(cfg)
    after = []
    for state, _ in trainer.fit(trainer.init_state(start, est, tx, space), lambda step: loss, est, tx, seed,
                                steps, space):
        after.append({"master": [_ints(p) for p in state.params],
                      "engine": [_ints(k) for k in space.to_engine(state.params)]})
    case = {"precision": precision, "seed": seed, "m": m, "eps_lsb": eps, "lr": list(lr), "steps": steps,
            "options": options,
            "support": None if support is None else [_ints(m) for m in support],
            "shapes": [list(s) for s in shapes], "initial": [_ints(p) for p in start],
            "calls": loss.calls, "after_step": after}
    if cfg.exact_head:
        case.update(head_quant=list(HEAD_QUANT), head_calls=loss.head_calls)
    return case


SELECTION_SHAPES = [(16, 3, 3, 3), (32, 3, 3, 16), (32, 1, 1, 16), (10, 32)]  # OHWI convs and a dense head


def selections() -> dict:
    """tflite_fg/selection.py's static, random (rounds 0-2) and magnitude selections of a small
    network, at three budgets: flat per-neuron booleans."""
    r = np.random.default_rng(1)
    kernels = [r.integers(-127, 128, s).astype(np.int8) for s in SELECTION_SHAPES]
    scales = [0.02, 0.01, 0.05, 0.003]
    axes = [0] * len(SELECTION_SHAPES)
    lay = selection.layout([f"l{i}" for i in range(len(axes))], SELECTION_SHAPES, axes)
    mags = selection.channel_magnitude(kernels, axes, scales)
    out = []
    for b in (0.088, 0.274, 0.5):
        budget = selection.budget_params(lay, b)
        orders = {"static": selection.static_order(lay), "magnitude": np.lexsort((np.arange(len(mags)), -mags))}
        orders.update({f"random{k}": selection.random_order(lay, 3, k) for k in range(3)})
        for name, order in orders.items():
            chosen = np.concatenate(selection.fill(lay, order, budget))
            out.append({"budget": b, "strategy": name, "budget_params": budget, "chosen": chosen.astype(int).tolist()})
    return {"shapes": [list(s) for s in SELECTION_SHAPES], "scales": scales,
            "kernels": [k.astype(int).ravel().tolist() for k in kernels], "seed": 3, "cases": out}


def velocity_rounds() -> dict:
    """A velocity Selector (init random) over the same network for 5 rounds, fed synthetic float32
    layer outputs that drift from round to round (with a channel that is all zero in every round
    and one that is zero in round 2 only): the outputs and each round's choice."""
    r = np.random.default_rng(2)
    lay = selection.layout([f"l{i}" for i in range(len(SELECTION_SHAPES))], SELECTION_SHAPES, [0] * len(SELECTION_SHAPES))
    cfg = selection.SelectionConfig("velocity", 0.274, 10, "random", 0.5, seed=4)
    selector = selection.Selector(cfg, lay)
    shapes = [(3, 4, 4, 16), (3, 2, 2, 32), (3, 2, 2, 32), (3, 10)]
    outputs = [r.standard_normal(s).astype(np.float32) for s in shapes]
    rounds = []
    for k in range(5):
        outputs = [(o + r.standard_normal(o.shape) * r.uniform(0.05, 1.0, o.shape[-1])).astype(np.float32)
                   for o in outputs]
        outputs[0][..., 3] = 0
        outputs[1][..., 5] = 0 if k == 2 else outputs[1][..., 5]
        chosen = np.concatenate(selector.select(k * cfg.every, outputs))
        rounds.append({"outputs": [o.ravel().tolist() for o in outputs], "by": selector.history[-1]["by"],
                       "chosen": chosen.astype(int).tolist()})
    return {"budget": cfg.budget, "every": cfg.every, "init": cfg.init, "mu": cfg.mu, "seed": cfg.seed, "rounds": rounds}


def exact_head_cases() -> list[dict]:
    """tflite_fg/exact_head.py on random int8 logits / head inputs: its softmax table, the integer
    error softmax - onehot and the float32 gradient (the Java core must match them bit for bit)."""
    r = np.random.default_rng(5)
    out = []
    for batch, classes, width, output_scale, input_scale, zero_point, kernel_scale in (
            (8, 10, 64, 0.10302417725324631, 0.1088118776679039, -128, 0.004431),
            (5, 2, 32, 0.0571, 0.02345, 3, 0.0123),
            (3, 5, 7, 0.5, 1.0, 0, 0.25)):  # a coarse scale: most table entries underflow to 0
        logits = r.integers(-128, 128, (batch, classes)).astype(np.int8)
        logits[0, :] = 127  # a row at the rail
        head_in = r.integers(-128, 128, (batch, width)).astype(np.int8)
        labels = r.integers(0, classes, batch)
        quant = exact_head.HeadQuant(output_scale, input_scale, zero_point, kernel_scale)
        table = exact_head.softmax_table(output_scale)
        grad = exact_head.head_gradient(exact_head.HeadBatch(logits, head_in, labels, 0.0), quant, table)
        out.append({"quant": list(quant), "logits": logits.astype(int).ravel().tolist(),
                    "head_in": head_in.astype(int).ravel().tolist(), "labels": labels.tolist(),
                    "classes": classes, "table": table.tolist(),
                    "error": exact_head.softmax_error(logits, labels, table).ravel().tolist(),
                    "gradient": [float(v) for v in grad.ravel()]})
    return out


def golden() -> dict:
    return {"description": "Python trainer runs for the Java core (tools/java_golden.py): replay `calls[i].loss` "
                           "in order; `calls[i].kernels` are the engine kernels of that call; `after_step` the "
                           "weights after each step (flat, row-major). `selections`: neuron selections.",
            "cases": [run_case(*c) for c in CASES], "selections": {**selections(), "velocity": velocity_rounds()},
            "exact_head": exact_head_cases()}


def main(argv):
    del argv
    OUT.write_text(json.dumps(golden(), separators=(",", ":")) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    _cli.run(main)
