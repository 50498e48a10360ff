"""Which neurons (output channels) may train under a parameter budget (method.md §2: Quélennec et
al. 2024, arXiv 2312.05282, and NEq, Bragagnolo et al. 2022).

On a device the update budget is memory: only the selected neurons' weights (and their optimizer
or perturbation state) need a writable copy. A budget is a fraction of the model's conv and dense
kernel parameters; a selection is one boolean vector per trainable tensor over its output
channels. Strategies only *rank* neurons; `fill` turns any ranking into a selection the same way
(take neurons in rank order while they fit), so the selection fits the budget exactly or just
under it (no unselected neuron would still fit) and strategies differ only in what they prefer:

- ``static``: the last layers first (MIT's sparse update: the head and the layers near it),
  within a layer channel 0 first; chosen once.
- ``random``: a fresh uniform ranking every round, from rng.stream_key(seed, round, SELECT_INDEX, 0).
- ``magnitude``: the largest mean |w| (dequantized) first; chosen once from the initial weights.
- ``velocity``: NEq's velocity of each neuron's outputs on a small fixed validation batch,
  |v| / (the neuron's parameter count) highest first (the budget paper's score); re-chosen every
  round. Rounds 0 and 1 have no velocity yet and use the ``init`` strategy.

Backend-agnostic (numpy only): the int8 graph's probe signature and Keras layer outputs feed the
same code, and channel masks are expanded to each backend's kernel layout by `element_masks`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from tflite_fg import rng

STRATEGIES = ("static", "random", "magnitude", "velocity")
DYNAMIC = ("random", "velocity")  # re-selected every round; the others are chosen once
INIT_STRATEGIES = ("static", "random", "magnitude")
# Output-channel axis of each kernel in TFLite's native layout (Conv2D OHWI, Dense [out, in],
# DepthwiseConv2D [1, H, W, C]); Keras layouts are in converters/.
TFLITE_CHANNEL_AXIS = {"Conv2D": 0, "Dense": 0, "DepthwiseConv2D": 3}


@dataclass(frozen=True)
class Layout:
    """The neurons of the trainable tensors: output channels and parameters per channel, per tensor.
    Neuron i of the flat numbering is channel i - offset(t) of tensor t (metadata order)."""

    names: tuple[str, ...]
    channels: tuple[int, ...]
    params_per_channel: tuple[int, ...]

    @property
    def total_params(self) -> int:
        return sum(c * p for c, p in zip(self.channels, self.params_per_channel))

    @property
    def num_neurons(self) -> int:
        return sum(self.channels)

    def neuron_params(self) -> np.ndarray:
        return np.concatenate([np.full(c, p, np.int64) for c, p in zip(self.channels, self.params_per_channel)])

    def layer_of(self) -> np.ndarray:
        return np.concatenate([np.full(c, i, np.int64) for i, c in enumerate(self.channels)])

    def split(self, flat: np.ndarray) -> list[np.ndarray]:
        """A flat per-neuron vector -> one vector per tensor."""
        return np.split(np.asarray(flat), np.cumsum(self.channels)[:-1])

    def selected_params(self, selection: Sequence[np.ndarray]) -> int:
        return int(sum(int(np.count_nonzero(s)) * p for s, p in zip(selection, self.params_per_channel)))


def layout(names: Sequence[str], shapes: Sequence[Sequence[int]], axes: Sequence[int]) -> Layout:
    """The layout of kernels of the given shapes whose output channels lie along `axes`."""
    if not len(names) == len(shapes) == len(axes) or not names:
        raise ValueError("layout needs one name, shape and channel axis per trainable tensor (at least one)")
    channels = tuple(int(s[a]) for s, a in zip(shapes, axes))
    per = tuple(int(np.prod(s, dtype=np.int64)) // c for s, c in zip(shapes, channels))
    return Layout(tuple(names), channels, per)


def tflite_axes(meta) -> list[int]:
    """The output-channel axis of each trainable kernel of a converted model (metadata.Metadata)."""
    unknown = {t.op for t in meta.trainable} - set(TFLITE_CHANNEL_AXIS)
    if unknown:
        raise ValueError(f"neuron selection does not know the output-channel axis of {sorted(unknown)}")
    return [TFLITE_CHANNEL_AXIS[t.op] for t in meta.trainable]


def tflite_layout(meta) -> Layout:
    return layout([t.layer for t in meta.trainable], [t.shape for t in meta.trainable], tflite_axes(meta))


def tflite_selector(cfg: "SelectionConfig", meta, int8_kernels: Sequence[np.ndarray]) -> "Selector":
    """A Selector over a converted model's trainable kernels (magnitudes from these int8 kernels)."""
    axes = tflite_axes(meta)
    return Selector(cfg, tflite_layout(meta), channel_magnitude(int8_kernels, axes, [t.scale for t in meta.trainable]))


def element_masks(selection: Sequence[np.ndarray], shapes: Sequence[Sequence[int]],
                  axes: Sequence[int]) -> list[np.ndarray]:
    """Per-channel selection -> boolean masks shaped like the kernels (True = may change)."""
    out = []
    for sel, shape, axis in zip(selection, shapes, axes):
        view = [1] * len(shape)
        view[axis] = len(sel)
        out.append(np.broadcast_to(np.asarray(sel, bool).reshape(view), tuple(shape)).copy())
    return out


def budget_params(lay: Layout, fraction: float) -> int:
    """floor(fraction * total kernel parameters)."""
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise ValueError(f"budget must be a fraction in (0, 1] of the kernel parameters, got {fraction!r}")
    return int(math.floor(fraction * lay.total_params + 1e-9))


def fill(lay: Layout, order: np.ndarray, budget: int) -> list[np.ndarray]:
    """Take neurons in `order` (a permutation of 0..num_neurons-1) while they fit: a neuron that
    does not fit is skipped and later, smaller ones may still be taken."""
    order = np.asarray(order, np.int64)
    if sorted(order.tolist()) != list(range(lay.num_neurons)):
        raise ValueError(f"order must be a permutation of the {lay.num_neurons} neurons")
    sizes = lay.neuron_params()
    if budget < sizes.min():
        raise ValueError(f"budget of {budget} parameters is smaller than the smallest neuron ({sizes.min()} "
                         "parameters): raise the budget fraction")
    chosen, left = np.zeros(lay.num_neurons, bool), budget
    for i in order:
        if sizes[i] <= left:
            chosen[i], left = True, left - sizes[i]
    return lay.split(chosen)


def _rank_desc(scores: np.ndarray) -> np.ndarray:
    """Highest score first; ties: lower neuron index first."""
    return np.lexsort((np.arange(len(scores)), -np.asarray(scores, np.float64)))


def static_order(lay: Layout) -> np.ndarray:
    """Last tensor first, channel 0 first within a tensor."""
    offsets = np.concatenate([[0], np.cumsum(lay.channels)[:-1]])
    return np.concatenate([offsets[t] + np.arange(lay.channels[t]) for t in reversed(range(len(lay.channels)))])


def random_order(lay: Layout, seed: int, round_: int) -> np.ndarray:
    """Ascending draws of the round's selection stream (ties: lower index first)."""
    u = rng.uint32_stream(rng.stream_key(seed, round_, rng.SELECT_INDEX, 0), lay.num_neurons)
    return np.lexsort((np.arange(lay.num_neurons), u.astype(np.int64)))


def channel_magnitude(kernels: Sequence[np.ndarray], axes: Sequence[int], scales: Sequence[float]) -> np.ndarray:
    """Mean |w| * scale of each output channel (flat over tensors): int8 kernels with their Δw, or
    float kernels with scale 1."""
    out = []
    for w, axis, s in zip(kernels, axes, scales):
        a = np.moveaxis(np.abs(np.asarray(w, np.float64)), axis, 0)
        out.append(a.reshape(a.shape[0], -1).mean(axis=1) * float(s))
    return np.concatenate(out)


def probe_indices(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Which examples form the small fixed batch velocity watches: `per_class` training examples of
    each class, in data order (labels only spread it over the classes; the outputs need none)."""
    if per_class < 1:
        raise ValueError(f"probe examples per class must be >= 1, got {per_class}")
    order = np.random.default_rng(seed).permutation(len(y))
    return np.sort([i for c in np.unique(y) for i in order[y[order] == c][:per_class]])


def probe_batch(x: np.ndarray, y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """The probe examples themselves (tools/export_java_data.py exports the indices instead, so the
    Java core watches the same batch without numpy's generator)."""
    return x[probe_indices(y, per_class, seed)]


# ---- NEq velocity ----------------------------------------------------------------------------

class VelocityState(NamedTuple):
    """What velocity remembers between rounds: the last outputs (one (rows, channels) matrix per
    tensor), the last phi and the velocity (flat per neuron), and how many rounds were observed."""

    outputs: tuple[np.ndarray, ...] | None = None
    phi: np.ndarray | None = None
    velocity: np.ndarray | None = None
    rounds: int = 0

    @property
    def ready(self) -> bool:
        """Velocity needs three observations: two for phi, two phis for its change."""
        return self.rounds >= 3


def _as_rows(outputs: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    """(batch, ..., channels) -> (rows, channels) float64: each neuron's outputs over the batch."""
    return tuple(np.asarray(o, np.float64).reshape(-1, np.shape(o)[-1]) for o in outputs)


def _column_sums(a: np.ndarray) -> np.ndarray:
    """Sums over the rows, added in row order (what the Java core does): numpy's own sum switches to
    pairwise summation when a matrix has one column, so the order is fixed explicitly."""
    return np.cumsum(a, axis=0)[-1] if len(a) else np.zeros(a.shape[1])


def cosine_per_neuron(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
    """phi: per neuron, the cosine similarity of its outputs now (a) and at the last round (b).
    Two all-zero vectors are the same (1); one all-zero vector is orthogonal to anything (0)."""
    out = []
    for x, y in zip(_as_rows(a), _as_rows(b)):
        if x.shape != y.shape:
            raise ValueError(f"neuron outputs changed shape between rounds: {y.shape} -> {x.shape}")
        nx, ny = np.sqrt(_column_sums(x * x)), np.sqrt(_column_sums(y * y))
        dot = _column_sums(x * y)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = np.where((nx > 0) & (ny > 0), dot / (nx * ny), np.where((nx == 0) & (ny == 0), 1.0, 0.0))
        out.append(np.clip(cos, -1.0, 1.0))
    return np.concatenate(out)


def observe_velocity(state: VelocityState, outputs: Sequence[np.ndarray], mu: float = 0.5) -> VelocityState:
    """One round of NEq: phi_t = cos(O_t, O_(t-1)); dphi_t = phi_t - phi_(t-1);
    v_t = dphi_t - mu * v_(t-1), with v = 0 before the first dphi."""
    rows = _as_rows(outputs)
    if not all(np.isfinite(r).all() for r in rows):
        raise ValueError("neuron outputs contain NaN or inf")
    if state.outputs is None:
        return VelocityState(rows, None, None, 1)
    phi = cosine_per_neuron(rows, state.outputs)
    if state.phi is None:
        return VelocityState(rows, phi, np.zeros_like(phi), 2)
    velocity = (phi - state.phi) - mu * state.velocity
    return VelocityState(rows, phi, velocity, state.rounds + 1)


def velocity_scores(state: VelocityState, lay: Layout) -> np.ndarray:
    """|v| / parameters of the neuron (the budget paper's score: cheap, fast-moving neurons first)."""
    if not state.ready:
        raise ValueError(f"velocity needs 3 observed rounds, has {state.rounds}")
    return np.abs(state.velocity) / lay.neuron_params()


# ---- the selector ----------------------------------------------------------------------------

@dataclass(frozen=True)
class SelectionConfig:
    """Which neurons train: ``strategy`` under ``budget`` (a fraction of the kernel parameters),
    re-selected every ``every`` steps when the strategy is dynamic."""

    strategy: str = "velocity"
    budget: float = 0.274
    every: int = 100
    init: str = "random"   # velocity's strategy for rounds 0 and 1
    mu: float = 0.5        # NEq's velocity momentum
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"selection strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.init not in INIT_STRATEGIES:
            raise ValueError(f"velocity init strategy must be one of {INIT_STRATEGIES}, got {self.init!r}")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"re-selection period must be an integer >= 1 steps, got {self.every!r}")
        if not 0 <= self.mu < 1:
            raise ValueError(f"velocity mu must be in [0, 1), got {self.mu!r}")
        if not (isinstance(self.budget, (int, float)) and 0 < self.budget <= 1):
            raise ValueError(f"budget must be a fraction in (0, 1] of the kernel parameters, got {self.budget!r}")

    @property
    def dynamic(self) -> bool:
        return self.strategy in DYNAMIC


class Selector:
    """Chooses the selection at each round (round r starts at step r * every) from the strategy,
    the initial magnitudes and, for velocity, the neuron outputs the caller measured."""

    def __init__(self, cfg: SelectionConfig, lay: Layout, magnitudes: np.ndarray | None = None):
        uses_magnitude = cfg.strategy == "magnitude" or (cfg.strategy == "velocity" and cfg.init == "magnitude")
        if uses_magnitude and magnitudes is None:
            raise ValueError("magnitude selection needs the per-neuron magnitudes (channel_magnitude)")
        self.cfg, self.layout, self.magnitudes = cfg, lay, magnitudes
        self.budget = budget_params(lay, cfg.budget)
        self.velocity = VelocityState()
        self.history: list[dict] = []

    @property
    def needs_outputs(self) -> bool:
        return self.cfg.strategy == "velocity"

    def due(self, step: int) -> bool:
        """True at step 0, and at every round start for dynamic strategies."""
        return step == 0 or (self.cfg.dynamic and step % self.cfg.every == 0)

    def _order(self, strategy: str, round_: int) -> np.ndarray:
        if strategy == "static":
            return static_order(self.layout)
        if strategy == "random":
            return random_order(self.layout, self.cfg.seed, round_)
        return _rank_desc(self.magnitudes)

    def select(self, step: int, outputs: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """The selection for the round starting at `step` (outputs: the neuron outputs on the fixed
        validation batch with the current weights; velocity only)."""
        round_ = step // self.cfg.every
        strategy = self.cfg.strategy
        if strategy == "velocity":
            if outputs is None:
                raise ValueError("velocity selection needs the neuron outputs of this round")
            self.velocity = observe_velocity(self.velocity, outputs, self.cfg.mu)
            if self.velocity.ready:
                order = _rank_desc(velocity_scores(self.velocity, self.layout))
            else:
                strategy, order = self.cfg.init, self._order(self.cfg.init, round_)
        else:
            order = self._order(strategy, round_)
        chosen = fill(self.layout, order, self.budget)
        self.history.append({"step": step, "by": strategy, "params": self.layout.selected_params(chosen),
                             "per_layer": [int(np.count_nonzero(c)) for c in chosen]})
        return chosen
