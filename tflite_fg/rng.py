"""The one module that owns randomness.

Everything random (perturbations, mini-batches) derives from a counter-based
SplitMix64 hash of ``(seed, step, index, tensor)``: a perturbation is
regenerated from four integers, never stored, and the Java port reproduces it
bit for bit with ``long`` arithmetic. The exact algorithms are in docs/rng.md.
"""

from __future__ import annotations

import numpy as np

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
MIX_MUL1 = 0xBF58476D1CE4E5B9
MIX_MUL2 = 0x94D049BB133111EB
# Reserved `index` of the mini-batch stream (-1 as a Java long), so that it
# never collides with a perturbation index 0..m-1.
MINIBATCH_INDEX = MASK64
# Further reserved indices (counting down from -1), one stream family per purpose, so no
# two purposes ever read the same numbers. A perturbation's second Gaussian draw (momentum-
# guided sampling) uses index + SECOND_DRAW.
ASCENT_INDEX = MASK64 - 1        # sharpness-aware ascent probe of a step
ENGINE_ROUND_INDEX = MASK64 - 2  # stochastic rounding of the w16 master copy for the engine
UPDATE_ROUND_INDEX = MASK64 - 3  # stochastic rounding of integer updates
MASK_INDEX = MASK64 - 4          # random sparse-update masks (step 0)
SELECT_INDEX = MASK64 - 5        # random neuron selection (step = selection round)
SECOND_DRAW = 1 << 32

_U64 = np.uint64


def mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrap-around multiply, as Java ``long``)."""
    z = np.asarray(z, dtype=_U64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> _U64(30))) * _U64(MIX_MUL1)
        z = (z ^ (z >> _U64(27))) * _U64(MIX_MUL2)
        return z ^ (z >> _U64(31))


def _u64(x: int) -> np.ndarray:
    """An int as a 0-d uint64 array, reduced mod 2**64 (a Java long's bits)."""
    return np.array(int(x) & MASK64, dtype=_U64)


def _mix_field(value: int, position: int) -> np.ndarray:
    """mix(value + position*GAMMA): each field hashed at its own offset, so swapping
    two fields (e.g. step and index) gives a different key."""
    with np.errstate(over="ignore"):
        return mix(_u64(value) + _u64(position * GAMMA))


def stream_key(seed: int, step: int, index: int, tensor: int) -> int:
    """The 64-bit key of the stream for one (seed, step, index, tensor).

    k = mix(seed + 1*GAMMA); k = mix(k ^ mix(step + 2*GAMMA));
    k = mix(k ^ mix(index + 3*GAMMA)); k = mix(k ^ mix(tensor + 4*GAMMA)),
    all mod 2**64. Arguments are reduced mod 2**64 (negative = two's complement).
    """
    k = _mix_field(seed, 1)
    for position, value in ((2, step), (3, index), (4, tensor)):
        k = mix(k ^ _mix_field(value, position))
    return int(k)


def uint32_stream(key: int, n: int) -> np.ndarray:
    """n uint32 draws u_i = mix(key + (i+1)*GAMMA) >> 32, i = 0..n-1.

    Counter-based: element i depends on (key, i) only, so a prefix does not
    depend on n and any element can be computed alone.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    counters = np.arange(1, n + 1, dtype=_U64)
    with np.errstate(over="ignore"):
        z = mix(_u64(key) + counters * _U64(GAMMA))
    return (z >> _U64(32)).astype(np.uint32)


def minibatch_indices(seed: int, step: int, n_total: int, batch_size: int) -> np.ndarray:
    """The step's mini-batch: batch_size distinct indices in [0, n_total).

    A partial Fisher-Yates shuffle of range(n_total) driven by
    u = uint32_stream(stream_key(seed, step, MINIBATCH_INDEX, 0), batch_size):
    for j in 0..batch_size-1, r = j + ((u_j * (n_total - j)) >> 32) (Lemire's
    multiply-shift, no rejection), swap perm[j] and perm[r]; return perm[:batch_size].
    Draw j only touches position j, so smaller batches are prefixes of larger ones.
    """
    if not 0 < n_total < (1 << 32):
        raise ValueError(f"n_total must be in [1, 2**32), got {n_total}")
    if not 0 < batch_size <= n_total:
        raise ValueError(f"batch_size must be in [1, n_total={n_total}], got {batch_size}")
    draws = uint32_stream(stream_key(seed, step, MINIBATCH_INDEX, 0), batch_size)
    perm = np.arange(n_total, dtype=np.int64)
    for j, u in enumerate(draws.tolist()):
        r = j + ((u * (n_total - j)) >> 32)
        perm[j], perm[r] = perm[r], perm[j]
    return perm[:batch_size].copy()
