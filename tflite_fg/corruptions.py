"""Fifteen image corruptions for grey 28x28 images (Fashion-MNIST-C), numpy only.

Why our own: CIFAR-10-C / MNIST-C are not reachable from here, and the runtime must stay numpy-only
so the same corrupted data can be regenerated on a device. Each function maps uint8 [N, 28, 28] to
uint8 [N, 28, 28] at one of SEVERITIES, vectorised over N, deterministic given ``seed``
(``np.random.default_rng(seed)``; the deterministic ones ignore it). Work happens in float32 on
[0, 1]; the result is rounded and clipped back to uint8. Convolutions pad by reflection (numpy
"reflect": mirrored about the edge pixel), and so does geometric resampling (bilinear).

The parameters of every corruption at every severity are in PARAMS (index 0, 1, 2 = easy, medium,
hard). They were chosen on the clean-trained CNN of converters/fmnist_cnn.py (90% clean accuracy):
all 15 types mixed, easy costs it about 7 points, medium about 24, hard about 44.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from tflite_fg.data import resize_bilinear

SEVERITIES: tuple[str, ...] = ("easy", "medium", "hard")
IMAGE_SHAPE = (28, 28)

# name -> (easy, medium, hard) parameter; what each number means is in the function's docstring.
PARAMS: dict[str, tuple] = {
    "gaussian_noise": (0.06, 0.12, 0.2),
    "shot_noise": (60.0, 20.0, 6.0),
    "impulse_noise": (0.02, 0.05, 0.1),
    "speckle_noise": (0.3, 0.6, 1.0),
    "gaussian_blur": (0.7, 1.1, 1.6),
    "defocus_blur": (1.2, 2.0, 3.0),
    "motion_blur": (3, 6, 9),
    "zoom_blur": (1.12, 1.28, 1.5),
    "fog": (0.1, 0.2, 0.45),
    "snow": ((0.015, 3), (0.035, 4), (0.07, 6)),
    "brightness": (0.04, 0.08, 0.18),
    "contrast": (0.85, 0.7, 0.5),
    "pixelate": (2, 3, 4),
    "jpeg": (10, 5, 2),
    "elastic_transform": ((0.8, 3.0), (1.4, 3.0), (2.2, 3.0)),
}
CORRUPTIONS: tuple[str, ...] = tuple(PARAMS)
# Those that draw random numbers (a different seed gives different bytes).
STOCHASTIC: frozenset[str] = frozenset({"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise",
                                        "motion_blur", "fog", "snow", "elastic_transform"})


# ---- shared pieces ------------------------------------------------------------------------------

def check_images(images: np.ndarray) -> np.ndarray:
    """uint8 [N, 28, 28] or ValueError saying what is wrong."""
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise ValueError(f"corruptions take uint8 grey images (0..255), got dtype {x.dtype}; "
                         "pass the raw Fashion-MNIST pixels, not preprocessed floats")
    if x.ndim != 3 or tuple(x.shape[1:]) != IMAGE_SHAPE:
        raise ValueError(f"corruptions take images of shape [N, {IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]}], got {x.shape}")
    return x


def check_severity(severity: str) -> int:
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}; choices: {', '.join(SEVERITIES)}")
    return SEVERITIES.index(severity)


def check_name(name: str) -> str:
    if name not in PARAMS:
        raise ValueError(f"unknown corruption {name!r}; choices: {', '.join(CORRUPTIONS)}")
    return name


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def _begin(images: np.ndarray, name: str, severity: str, seed: int):
    """(float32 images on [0, 1], this severity's parameter, generator)."""
    x = check_images(images)
    param = PARAMS[name][check_severity(severity)]
    return x.astype(np.float32) / np.float32(255.0), param, np.random.default_rng(_check_seed(seed))


def _end(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * np.float32(255.0)), 0, 255).astype(np.uint8)


def _conv(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Same-size 2-D correlation of every image with one small odd kernel, reflect padding."""
    kh, kw = kernel.shape
    h, w = x.shape[1:]
    padded = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)), mode="reflect")
    out = np.zeros_like(x)
    for i, j in zip(*np.nonzero(kernel)):
        out += np.float32(kernel[i, j]) * padded[:, i:i + h, j:j + w]
    return out


def _gaussian_kernel(sigma: float) -> np.ndarray:
    r = int(np.ceil(3.0 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def _gaussian_filter(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable: a row pass then a column pass."""
    k = _gaussian_kernel(sigma)
    return _conv(_conv(x, k[None, :]), k[:, None])


def _reflect(c: np.ndarray, n: int) -> np.ndarray:
    """Coordinates mirrored about the edge pixel centres 0 and n-1 (numpy "reflect")."""
    period = 2 * (n - 1)
    c = np.mod(c, period)
    return np.where(c > n - 1, period - c, c)


def _sample(x: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear sampling of image n at (ys[n], xs[n]): float pixel coordinates of shape [N, H, W],
    or [1, H, W] for the same coordinates in every image."""
    n, h, w = x.shape
    ys, xs = _reflect(ys, h), _reflect(xs, w)
    y0 = np.minimum(np.floor(ys).astype(np.intp), h - 2)
    x0 = np.minimum(np.floor(xs).astype(np.intp), w - 2)
    wy, wx = (ys - y0).astype(np.float32), (xs - x0).astype(np.float32)
    if ys.shape[0] == 1:   # shared coordinates: gather along the pixel axis of [N, H*W]
        flat, i = x.reshape(n, h * w), (y0 * w + x0)[0]
        tl, tr, bl, br = (flat[:, j].reshape(n, h, w) for j in (i, i + 1, i + w, i + w + 1))
    else:
        flat = x.reshape(-1)
        i = (np.arange(n) * (h * w))[:, None, None] + y0 * w + x0   # top-left neighbour, flat index
        tl, tr, bl, br = flat[i], flat[i + 1], flat[i + w], flat[i + w + 1]
    top = tl + (tr - tl) * wx
    return top + (bl + (br - bl) * wx - top) * wy


def _grid(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = x.shape[1:]
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    return ys[None], xs[None]


def _line_average(x: np.ndarray, length: int, angles: np.ndarray) -> np.ndarray:
    """Mean of ``length`` samples along a centred line at angle angles[n] (radians) through each pixel."""
    ys, xs = _grid(x)
    dy, dx = np.sin(angles)[:, None, None], np.cos(angles)[:, None, None]
    out = np.zeros_like(x)
    for t in np.linspace(-(length - 1) / 2.0, (length - 1) / 2.0, length):
        out += _sample(x, ys + np.float32(t) * dy, xs + np.float32(t) * dx)
    return out / np.float32(length)


# ---- noise ----------------------------------------------------------------------------------------

def gaussian_noise(images: np.ndarray, severity: str = "medium", seed: int = 0) -> np.ndarray:
    """Additive white Gaussian noise, std PARAMS (of the 0..1 range): sensor read noise."""
    x, sigma, rng = _begin(images, "gaussian_noise", severity, seed)
    return _end(x + np.float32(sigma) * rng.standard_normal(x.shape, dtype=np.float32))


def shot_noise(images: np.ndarray, severity: str = "medium", seed: int = 0) -> np.ndarray:
    """Poisson photon noise: pixel = Poisson(x * PARAMS) / PARAMS (fewer photons, noisier), so it
    grows with brightness and leaves the black background clean."""
    x, photons, rng = _begin(images, "shot_noise", severity, seed)
    return _end(rng.poisson(x * photons).astype(np.float32) / np.float32(photons))


def impulse_noise(images: np.ndarray, severity: str = "medium", seed: int = 0) -> np.ndarray:
    """Salt and pepper: a fraction PARAMS of the pixels set to black or white (dead/hot pixels,
    bit errors)."""
    x, amount, rng = _begin(images, "impulse_noise", severity, seed)
    u = rng.random(x.shape, dtype=np.float32)
    x = np.where(u < amount / 2, np.float32(0.0), x)
    return _end(np.where((u >= amount / 2) & (u < amount), np.float32(1.0), x))


def speckle_noise(images: np.ndarray, severity: str = "medium", seed: int = 0) -> np.ndarray:
    """Multiplicative Gaussian noise x * (1 + PARAMS * n): noise proportional to the signal
    (coherent imaging)."""
    x, sigma, rng = _begin(images, "speckle_noise", severity, seed)
    return _end(x * (1 + np.float32(sigma) * rng.standard_normal(x.shape, dtype=np.float32)))


# ---- blur -----------------------------------------------------------------------------------------

def gaussian_blur(images: np.ndarray, severity: str = "medium", seed: int = 0) -> np.ndarray:
    """Gaussian blur of std PARAMS pixels (separable, radius 3 std): an out-of-focus or dirty lens."""
    x, sigma, _ = _begin(images, "gaussian_blur", severity, seed)
    return _end(_gaussian_filter(x, sigma))


def defocus_blur(images: np.ndarray, severity: str = "medium", seed: int = 0) -> np.ndarray:
    """Convolution with an anti-aliased disk of radius PARAMS pixels: the aperture of a defocused lens."""
    x, radius, _ = _begin(images, "defocus_blur", severity, seed)
    r = int(np.ceil(radius))
    t = np.arange(-r, r + 1, dtype=np.float32)
    disk = np.clip(radius + 0.5 - np.hypot(t[:, None], t[None, :]), 0.0, 1.0)
    return _end(_conv(x, (disk / disk.sum()).astype(np.float32)))


def motion_blur(images: np.ndarray, severity: str = "medium", seed: int = 0) -> np.ndarray:
    """Average along a line of PARAMS pixels at a random angle per image: camera shake."""
    x, length, rng = _begin(images, "motion_blur", severity, seed)
    return _end(_line_average(x, length, rng.uniform(0.0, np.pi, len(x))))


def zoom_blur(images: np.ndarray, severity: str = "medium", seed: int = 0) -> np.ndarray:
    """Mean of 8 copies zoomed about the centre by factors 1..PARAMS: moving towards the object
    during the exposure."""
    x, zoom, _ = _begin(images, "zoom_blur", severity, seed)
    ys, xs = _grid(x)
    cy, cx = (x.shape[1] - 1) / 2.0, (x.shape[2] - 1) / 2.0
    out = np.zeros_like(x)
    factors = np.linspace(1.0, zoom, 8)
    for z in factors:
        out += _sample(x, cy + (ys - cy) / np.float32(z), cx + (xs - cx) / np.float32(z))
    return _end(out / np.float32(len(factors)))


# ---- weather-like ---------------------------------------------------------------------------------

def fog(images: np.ndarray, severity: str = "medium", seed: int = 0) -> np.ndarray:
    """A smooth random haze field f in [0, 1] (three octaves of upsampled noise) blended in as
    (x + a f) / (1 + a), a = PARAMS: raises the background and lowers contrast unevenly."""
    x, a, rng = _begin(images, "fog", severity, seed)
    field = np.zeros_like(x)
    for grid, weight in ((3, 1.0), (5, 0.5), (9, 0.25)):
        field += np.float32(weight) * resize_bilinear(rng.random((len(x), grid, grid), dtype=np.float32), x.shape[1:])
    lo, hi = field.min(axis=(1, 2), keepdims=True), field.max(axis=(1, 2), keepdims=True)
    field = (field - lo) / np.maximum(hi - lo, np.float32(1e-6))
    return _end((x + np.float32(a) * field) / np.float32(1 + a))


def snow(images: np.ndarray, severity: str = "medium", seed: int = 0) -> np.ndarray:
    """Frost/snow-like: sparse bright flakes (density, streak length = PARAMS) smeared into short
    streaks along one random direction per image, screen-blended over the image."""
    x, (density, length), rng = _begin(images, "snow", severity, seed)
    flakes = np.where(rng.random(x.shape, dtype=np.float32) < density,
                      rng.uniform(0.6, 1.0, x.shape).astype(np.float32), np.float32(0.0))
    streaks = np.clip(_line_average(flakes, length, rng.uniform(0.0, np.pi, len(x))) * np.float32(length / 2), 0, 1)
    return _end(1 - (1 - x) * (1 - streaks))


def brightness(images: np.ndarray, severity: str = "medium", seed: int = 0) -> np.ndarray:
    """Add PARAMS to every pixel (then clip): over-exposure; the black background turns grey and
    the bright parts saturate."""
    x, b, _ = _begin(images, "brightness", severity, seed)
    return _end(x + np.float32(b))


def contrast(images: np.ndarray, severity: str = "medium", seed: int = 0) -> np.ndarray:
    """Scale the deviation from each image's mean by PARAMS: flat lighting, a washed-out picture."""
    x, c, _ = _begin(images, "contrast", severity, seed)
    mean = x.mean(axis=(1, 2), keepdims=True)
    return _end((x - mean) * np.float32(c) + mean)


# ---- digital --------------------------------------------------------------------------------------

def pixelate(images: np.ndarray, severity: str = "medium", seed: int = 0) -> np.ndarray:
    """Average over PARAMS x PARAMS blocks, shown at full size: a low-resolution sensor upscaled."""
    x, b, _ = _begin(images, "pixelate", severity, seed)
    n, h, w = x.shape
    ph, pw = -h % b, -w % b
    p = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="reflect")
    blocks = p.reshape(n, (h + ph) // b, b, (w + pw) // b, b).mean(axis=(2, 4))
    return _end(np.repeat(np.repeat(blocks, b, axis=1), b, axis=2)[:, :h, :w])


_JPEG_LUMA = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=np.float64)


def _dct_matrix(n: int = 8) -> np.ndarray:
    """Orthonormal DCT-II: coefficients = D @ block @ D.T, block = D.T @ coefficients @ D."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d.astype(np.float32)


def jpeg(images: np.ndarray, severity: str = "medium", seed: int = 0) -> np.ndarray:
    """JPEG-like compression at quality PARAMS (1..100): 8x8 block DCT quantized with the standard
    luminance table scaled as libjpeg does; blocking and ringing artefacts."""
    x, quality, _ = _begin(images, "jpeg", severity, seed)
    scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
    q = np.clip(np.floor((_JPEG_LUMA * scale + 50.0) / 100.0), 1, 255).astype(np.float32)
    n, h, w = x.shape
    p = np.pad(x * np.float32(255.0) - np.float32(128.0), ((0, 0), (0, -h % 8), (0, -w % 8)), mode="edge")
    bh, bw = p.shape[1] // 8, p.shape[2] // 8
    blocks = p.reshape(n, bh, 8, bw, 8).transpose(0, 1, 3, 2, 4)
    d = _dct_matrix()
    coef = np.rint(d @ blocks @ d.T / q) * q
    rec = d.T @ coef @ d
    out = rec.transpose(0, 1, 3, 2, 4).reshape(p.shape)[:, :h, :w]
    return _end((out + np.float32(128.0)) / np.float32(255.0))


def elastic_transform(images: np.ndarray, severity: str = "medium", seed: int = 0) -> np.ndarray:
    """A smooth random displacement field (white noise smoothed by a Gaussian of std sigma, scaled
    to an rms of amp pixels; (amp, sigma) = PARAMS), bilinear resampling: wobbly optics, a
    deformed object."""
    x, (amp, sigma), rng = _begin(images, "elastic_transform", severity, seed)
    field = _gaussian_filter(rng.uniform(-1.0, 1.0, (2 * len(x), *x.shape[1:])).astype(np.float32), sigma)
    field = field.reshape(2, len(x), *x.shape[1:])
    rms = np.sqrt((field ** 2).mean(axis=(0, 2, 3), keepdims=True))
    field = field * (np.float32(amp) / np.maximum(rms, np.float32(1e-6)))
    ys, xs = _grid(x)
    return _end(_sample(x, ys + field[0], xs + field[1]))


_FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise, "impulse_noise": impulse_noise,
    "speckle_noise": speckle_noise, "gaussian_blur": gaussian_blur, "defocus_blur": defocus_blur,
    "motion_blur": motion_blur, "zoom_blur": zoom_blur, "fog": fog, "snow": snow,
    "brightness": brightness, "contrast": contrast, "pixelate": pixelate, "jpeg": jpeg,
    "elastic_transform": elastic_transform,
}


def corrupt(images: np.ndarray, name: str, severity: str, seed: int = 0) -> np.ndarray:
    """Corruption ``name`` (one of CORRUPTIONS) at ``severity`` (one of SEVERITIES): uint8 -> uint8."""
    return _FUNCTIONS[check_name(name)](images, severity, seed)
