"""Int8 rules, written once: symmetric narrow-range int8, integer requantization
(multiply and shift, QZO-FF Eq. 6-8) and the statically quantized Gaussian.

Weights are symmetric per tensor with zero point 0 in [-127, 127]. Every
conversion to int8 goes through `saturate_int8` (round first, then clip,
never a bare ``astype``, which wraps around).
"""

from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -127, 127

# Perturbation quantization (paper §QZO-FF): z ~ N(0, 1) quantized to 8 bits
# with z_max = 3.5, so Dz = 3.5/127 ~= 0.0276 and 1.0 quantizes to ONE_Q = 36.
Z_MAX = 3.5
Z_SCALE = Z_MAX / INT8_MAX
ONE_Q = 36


def saturate_int8(x: np.ndarray) -> np.ndarray:
    """Clip an integer array to [-127, 127], then cast to int8."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"saturate_int8 needs integers (round first), got dtype {x.dtype}")
    return np.clip(x, INT8_MIN, INT8_MAX).astype(np.int8)


def saturate(x: np.ndarray, bits: int) -> np.ndarray:
    """Clip integers to the symmetric narrow range of `bits` (int8: +-127, int16: +-32767)."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"saturate needs integers (round first), got dtype {x.dtype}")
    qmax = (1 << (bits - 1)) - 1
    return np.clip(x, -qmax, qmax).astype(np.int8 if bits == 8 else np.int16 if bits == 16 else np.int32)


def round_shift(x: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """(x*M + 2**(k-1)) >> k in int64: x * M/2**k rounded half up (arithmetic shift).

    The integer requantization of QZO-FF (Eq. 6-8), M/2**k approximating a real scale.
    """
    if shift < 1:
        raise ValueError(f"shift must be >= 1, got {shift}")
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"round_shift needs integers, got dtype {x.dtype}")
    return (x.astype(np.int64) * np.int64(multiplier) + np.int64(1 << (shift - 1))) >> np.int64(shift)


def multiplier_shift(real: float, k: int = 16) -> tuple[int, int]:
    """(M, k) with M = round(real * 2**k), so that M/2**k ~= real (real > 0)."""
    if not real > 0 or not math.isfinite(real):
        raise ValueError(f"real must be finite and > 0, got {real}")
    multiplier = round(real * (1 << k))
    if multiplier < 1:
        raise ValueError(f"real={real} underflows with k={k}; use a larger k")
    return multiplier, k


def quantize(x: np.ndarray, scale: float) -> np.ndarray:
    """Symmetric int8 quantization q = clip(rint(x / scale)) (zero point 0)."""
    q = np.rint(np.asarray(x, dtype=np.float64) / scale)
    return saturate_int8(np.clip(q, INT8_MIN, INT8_MAX).astype(np.int64))


def dequantize(q: np.ndarray, scale: float, zero_point: int = 0) -> np.ndarray:
    """x = (q - zero_point) * scale, float32."""
    return ((np.asarray(q, dtype=np.int32) - zero_point) * np.float32(scale)).astype(np.float32)


def gaussian_thresholds() -> list[int]:
    """T[j] = round(Phi((j + 0.5) * Dz) * 2**32), j = -127..126.

    Inverse-CDF table: z_q = -127 + #{T <= u} for a uniform uint32 u samples the
    quantized, clipped N(0, 1) exactly. Used only to check the literals below.
    """
    return [
        round(0.5 * math.erfc(-(j + 0.5) * Z_SCALE / math.sqrt(2.0)) * 2**32)
        for j in range(INT8_MIN, INT8_MAX)
    ]


# The table as literals, so that every platform (and the Java port) uses the
# same integers regardless of its erfc. tests/test_quant.py regenerates them.
GAUSSIAN_THRESHOLDS = np.array([
    1052046, 1165798, 1290925, 1428460, 1579520, 1745308, 1927121,
    2126358, 2344523, 2583232, 2844221, 3129355, 3440629, 3780183,
    4150304, 4553437, 4992195, 5469362, 5987907, 6550990, 7161973,
    7824427, 8542142, 9319139, 10159675, 11068255, 12049643, 13108868,
    14251236, 15482338, 16808058, 18234586, 19768421, 21416384, 23185621,
    25083616, 27118192, 29297525, 31630139, 34124920, 36791118, 39638346,
    42676589, 45916200, 49367902, 53042789, 56952322, 61108325, 65522983,
    70208834, 75178761, 80445985, 86024051, 91926818, 98168447, 104763380,
    111726325, 119072237, 126816296, 134973884, 143560560, 152592031, 162084128,
    172052769, 182513931, 193483614, 204977805, 217012440, 229603363, 242766289,
    256516756, 270870085, 285841333, 301445247, 317696217, 334608224, 352194797,
    370468958, 389443175, 409129309, 429538567, 450681446, 472567690, 495206235,
    518605163, 542771653, 567711936, 593431249, 619933789, 647222675, 675299908,
    704166331, 733821596, 764264132, 795491114, 827498438, 860280699, 893831169,
    928141783, 963203125, 999004423, 1035533539, 1072776976, 1110719873, 1149346022,
    1188637875, 1228576561, 1269141910, 1310312476, 1352065566, 1394377277, 1437222531,
    1480575119, 1524407748, 1568692088, 1613398828, 1658497734, 1703957708, 1749746853,
    1795832540, 1842181475, 1888759774, 1935533038, 1982466425, 2029524731, 2076672468,
    2123873946, 2171093350, 2218294828, 2265442565, 2312500871, 2359434258, 2406207522,
    2452785821, 2499134756, 2545220443, 2591009588, 2636469562, 2681568468, 2726275208,
    2770559548, 2814392177, 2857744765, 2900590019, 2942901730, 2984654820, 3025825386,
    3066390735, 3106329421, 3145621274, 3184247423, 3222190320, 3259433757, 3295962873,
    3331764171, 3366825513, 3401136127, 3434686597, 3467468858, 3499476182, 3530703164,
    3561145700, 3590800965, 3619667388, 3647744621, 3675033507, 3701536047, 3727255360,
    3752195643, 3776362133, 3799761061, 3822399606, 3844285850, 3865428729, 3885837987,
    3905524121, 3924498338, 3942772499, 3960359072, 3977271079, 3993522049, 4009125963,
    4024097211, 4038450540, 4052201007, 4065363933, 4077954856, 4089989491, 4101483682,
    4112453365, 4122914527, 4132883168, 4142375265, 4151406736, 4159993412, 4168151000,
    4175895059, 4183240971, 4190203916, 4196798849, 4203040478, 4208943245, 4214521311,
    4219788535, 4224758462, 4229444313, 4233858971, 4238014974, 4241924507, 4245599394,
    4249051096, 4252290707, 4255328950, 4258176178, 4260842376, 4263337157, 4265669771,
    4267849104, 4269883680, 4271781675, 4273550912, 4275198875, 4276732710, 4278159238,
    4279484958, 4280716060, 4281858428, 4282917653, 4283899041, 4284807621, 4285648157,
    4286425154, 4287142869, 4287805323, 4288416306, 4288979389, 4289497934, 4289975101,
    4290413859, 4290816992, 4291187113, 4291526667, 4291837941, 4292123075, 4292384064,
    4292622773, 4292840938, 4293040175, 4293221988, 4293387776, 4293538836, 4293676371,
    4293801498, 4293915250,
], dtype=np.uint32)


def _bucket_counts() -> tuple[np.ndarray, np.ndarray]:
    """#{j : T[j] <= u} for the lowest and the highest u of each 2**16-wide bucket of uint32."""
    low = np.arange(1 << 16, dtype=np.uint64) << np.uint64(16)
    lo = np.searchsorted(GAUSSIAN_THRESHOLDS, low, side="right")
    hi = np.searchsorted(GAUSSIAN_THRESHOLDS, low + np.uint64(0xFFFF), side="right")
    return (lo + INT8_MIN).astype(np.int8), lo != hi


# Speed only (the definition is the searchsorted below): a bucket without a threshold inside has
# one answer, so a table lookup on u >> 16 decides all but ~0.4% of draws.
_BUCKET_Z, _BUCKET_AMBIGUOUS = _bucket_counts()


def gaussian_q8_from_uint32(u: np.ndarray) -> np.ndarray:
    """Inverse CDF: z_q = -127 + #{j : T[j] <= u} (int8, on the scale Z_SCALE)."""
    u = np.asarray(u, dtype=np.uint32)
    bucket = u >> np.uint32(16)
    z = _BUCKET_Z[bucket]
    ambiguous = np.flatnonzero(_BUCKET_AMBIGUOUS[bucket])
    if ambiguous.size:
        count = np.searchsorted(GAUSSIAN_THRESHOLDS, u.reshape(-1)[ambiguous], side="right")
        z.reshape(-1)[ambiguous] = (count + INT8_MIN).astype(np.int8)
    return z


def round_shift_stochastic(x: np.ndarray, multiplier: int, shift: int, u: np.ndarray) -> np.ndarray:
    """(x*M + r) >> k with r = u >> (32 - k) uniform in [0, 2**k): x*M/2**k rounded up with
    probability equal to its fraction (unbiased), from uint32 draws u (1 <= k <= 32)."""
    if not 1 <= shift <= 32:
        raise ValueError(f"shift must be in [1, 32], got {shift}")
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"round_shift_stochastic needs integers, got dtype {x.dtype}")
    r = np.asarray(u, dtype=np.uint32).astype(np.int64) >> np.int64(32 - shift)
    return (x.astype(np.int64) * np.int64(multiplier) + r) >> np.int64(shift)


# ---- QZO-FF (paper Eq. 6-8), step by step -------------------------------------------------
ACC_MAX = (1 << 31) - 1  # the paper's 32-bit accumulator


def quantize_eps(eps: float, weight_scale: float) -> int:
    """eps_q = round(eps / Dw): the perturbation size on the weight grid (>= 1 LSB)."""
    eps_q = round(eps / weight_scale)
    if eps_q < 1:
        raise ValueError(f"eps={eps} is below half a weight LSB ({weight_scale}); eps_q would be 0")
    return eps_q


def perturb_paper(w_q: np.ndarray, z_q: np.ndarray, eps_q: int, sign: int, bits: int,
                  multiplier: int, shift: int) -> np.ndarray:
    """w_q+- = ((w_q * 1_q +- eps_q * z_q) * M) >> k, M/2**k ~= Dz (QZO-FF Eq. 6).

    w_q * 1_q puts the weight on the scale Dw*Dz of eps_q*z_q; the 32-bit accumulator must
    not overflow (checked); M >> k requantizes back to Dw. Note 1_q*Dz = 36*3.5/127 = 0.992,
    so the anchor itself shrinks by 0.8% (|w_q| >= 64 moves by an LSB at 8 bits).
    """
    acc = np.asarray(w_q).astype(np.int64) * ONE_Q + int(sign) * int(eps_q) * np.asarray(z_q).astype(np.int64)
    if acc.size and int(np.max(np.abs(acc))) > ACC_MAX:
        raise OverflowError("QZO-FF accumulator exceeds 32 bits; lower eps_q")
    return saturate(round_shift(acc, multiplier, shift), bits)


def sign_gradient_q8(s: np.ndarray, m: int) -> np.ndarray:
    """g_q = round(S / m), half away from zero, int8 on the scale Dz (QZO-FF Eq. 7).

    S = sum_i sign(L+_i - L-_i) z_q,i, so |S| <= 127 m and g_q fits int8."""
    s = np.asarray(s).astype(np.int64)
    q = (2 * np.abs(s) + m) // (2 * m)
    return (np.sign(s) * q).astype(np.int8)


def update_paper(w_q: np.ndarray, g_q: np.ndarray, multiplier: int, shift: int, bits: int) -> np.ndarray:
    """w_q <- w_q - round((Dlr * Dz / Dw) * g_q) with M/2**k ~= Dlr*Dz/Dw (QZO-FF Eq. 8)."""
    step = round_shift(np.asarray(g_q).astype(np.int64), multiplier, shift)
    return saturate(np.asarray(w_q).astype(np.int64) - step, bits)
