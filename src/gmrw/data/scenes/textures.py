"""Procedural textures with the statistics of natural images, from a random generator alone.

Natural photographs are, to a first approximation, occluding regions of many sizes (a power-law
"dead leaves" model) filled with surfaces that have their own texture: 1/f noise, stripes and
weaves, blobs, print, smooth gradients. :func:`random_texture` builds exactly that: a few full-size
*fills*, then a dead-leaves partition whose regions each take one fill (with its own colour
gain), under a smooth illumination field. Features trained on such images transfer to real
photographs far better than ones trained on a handful of photos, and no photograph is needed, so
the photographs that ship with scikit-image stay free for evaluation.

Every function takes a ``numpy.random.Generator`` and returns float32 in [0, 255]: fields
``(h, w)``, images ``(3, h, w)``. Nothing touches a global random state.
"""

from __future__ import annotations

import functools
import math

import numpy as np

# Letters, digits and marks that text-like fills draw.
_GLYPHS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789#%&@*+=?!"


def _normalise(field: np.ndarray) -> np.ndarray:
    low, high = np.percentile(field, [1, 99])
    return np.clip((field - low) / max(high - low, 1e-6), 0.0, 1.0)


def pink_noise(rng: np.random.Generator, h: int, w: int, exponent: float = 1.0) -> np.ndarray:
    """A random field with power spectrum ``1 / f^(2·exponent)`` (1: natural-image-like), in [0, 1]."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    radius = np.sqrt(fx * fx + fy * fy)
    radius[0, 0] = 1.0
    spectrum = (
        rng.standard_normal((h, w // 2 + 1)) + 1j * rng.standard_normal((h, w // 2 + 1))
    ) / radius**exponent
    spectrum[0, 0] = 0.0
    return _normalise(np.fft.irfft2(spectrum, s=(h, w)))


def smooth_noise(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """Band-limited noise with features about ``scale`` px across, in [0, 1]."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    envelope = np.exp(-0.5 * (fx * fx + fy * fy) * (scale / 2.0) ** 2)
    spectrum = (rng.standard_normal((h, w // 2 + 1)) + 1j * rng.standard_normal((h, w // 2 + 1))) * envelope
    spectrum[0, 0] = 0.0
    return _normalise(np.fft.irfft2(spectrum, s=(h, w)))


def stripes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A grating (sometimes two crossed: a weave or checker) of random orientation and period,
    bent by smooth noise, in [0, 1]."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    warp = (smooth_noise(rng, h, w, rng.uniform(20, 80)) - 0.5) * rng.uniform(0, 12)
    out = np.zeros((h, w))
    count = 1 if rng.random() < 0.6 else 2
    for _ in range(count):
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(3.0, 24.0)
        phase = (xs * math.cos(angle) + ys * math.sin(angle) + warp) * (2 * math.pi / period)
        wave = np.sin(phase + rng.uniform(0, 2 * math.pi))
        if rng.random() < 0.5:  # square-ish waves: hard edges as on printed or woven surfaces
            wave = np.tanh(rng.uniform(2, 8) * wave)
        out += wave
    return _normalise(out)


def blobs(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Thresholded smooth noise: spots and patches with soft edges, in [0, 1]."""
    field = smooth_noise(rng, h, w, rng.uniform(4, 30))
    level = rng.uniform(0.35, 0.65)
    sharpness = rng.uniform(8, 40)
    return 1.0 / (1.0 + np.exp(-sharpness * (field - level)))


@functools.lru_cache(maxsize=8)
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def text_marks(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Lines of random letters, digits and marks (Pillow's bundled font) at one random size, in [0, 1]."""
    from PIL import Image, ImageDraw

    size = int(rng.integers(7, 26))
    image = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(image)
    font = _font(size)
    line = int(size * rng.uniform(1.1, 1.8))
    for y in range(int(rng.integers(-size // 2, 1)), h, line):
        x = int(rng.integers(-size, 1))
        while x < w:
            word = "".join(rng.choice(list(_GLYPHS), size=int(rng.integers(1, 9))))
            draw.text((x, y), word, fill=255, font=font)
            x += int(size * (0.6 * len(word) + rng.uniform(0.5, 2.0)))
    return np.asarray(image, dtype=np.float64) / 255.0


def random_colours(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` RGB colours (count, 3) in [0, 255]: random hues at random saturation, with the
    brightness spread natural scenes have."""
    hue = rng.uniform(0, 1, count)
    saturation = rng.uniform(0, 1, count) ** 1.5
    value = rng.uniform(0.08, 1.0, count)
    # HSV → RGB, vectorised
    i = np.floor(hue * 6).astype(int) % 6
    f = hue * 6 - np.floor(hue * 6)
    p, q, t = value * (1 - saturation), value * (1 - saturation * f), value * (1 - saturation * (1 - f))
    table = np.stack(
        [
            np.stack([value, t, p], -1),
            np.stack([q, value, p], -1),
            np.stack([p, value, t], -1),
            np.stack([p, q, value], -1),
            np.stack([t, p, value], -1),
            np.stack([value, p, q], -1),
        ]
    )
    return table[i, np.arange(count)] * 255.0


def colourise(field: np.ndarray, rng: np.random.Generator, num_colours: int | None = None) -> np.ndarray:
    """A field in [0, 1] → ``(3, h, w)`` through a random ramp of 2–4 colours."""
    count = num_colours or int(rng.integers(2, 5))
    colours = random_colours(rng, count)
    position = field * (count - 1)
    low = np.clip(np.floor(position).astype(int), 0, count - 2)
    frac = (position - low)[..., None]
    image = colours[low] * (1 - frac) + colours[low + 1] * frac
    return image.transpose(2, 0, 1)


def random_fill(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """One surface ``(3, h, w)``: 1/f noise, stripes, blobs, print, a gradient or a flat colour."""
    kind = rng.choice(["noise", "noise", "stripes", "blobs", "text", "gradient", "flat"])
    if kind == "noise":
        field = pink_noise(rng, h, w, rng.uniform(0.6, 1.6))
    elif kind == "stripes":
        field = stripes(rng, h, w)
    elif kind == "blobs":
        field = blobs(rng, h, w)
    elif kind == "text":
        field = text_marks(rng, h, w)
    elif kind == "gradient":
        ys, xs = np.mgrid[0:h, 0:w]
        angle = rng.uniform(0, 2 * math.pi)
        field = _normalise(xs * math.cos(angle) + ys * math.sin(angle))
    else:
        field = np.zeros((h, w))
    image = colourise(field, rng, 1 if kind == "flat" else None)
    # Fine grain on every surface: real surfaces are rarely perfectly flat.
    grain = pink_noise(rng, h, w, rng.uniform(0.3, 1.0)) - 0.5
    return image + grain[None] * rng.uniform(4, 30)


def _shape_distance(kind: str, xs: np.ndarray, ys: np.ndarray, radius: float, aspect: float, angle: float):
    """Signed distance (px, positive inside) of a centred shape at local coordinates."""
    c, s = math.cos(angle), math.sin(angle)
    u, v = xs * c + ys * s, (-xs * s + ys * c) / aspect
    if kind == "disc":
        return radius - np.sqrt(u * u + v * v)
    if kind == "square":
        return radius - np.maximum(np.abs(u), np.abs(v))
    # triangle: the intersection of three half-planes
    distances = [radius * 0.5 - (u * math.cos(a) + v * math.sin(a)) for a in (0.0, 2.0944, 4.1888)]
    return np.minimum(np.minimum(distances[0], distances[1]), distances[2])


def dead_leaves(
    rng: np.random.Generator,
    fills: list[np.ndarray],
    coverage: float = 2.5,
    min_radius: float = 3.0,
    max_radius: float | None = None,
    alpha: float = 3.0,
) -> np.ndarray:
    """A dead-leaves image ``(3, h, w)``: shapes (discs, squares, triangles, stretched and rotated)
    with radii drawn from ``p(r) ∝ r^-alpha`` on ``[min_radius, max_radius]``, dropped one on top of
    another in random order until their total area is ``coverage`` times the image's (a fraction
    ``exp(-coverage)`` of the first fill stays visible), each painted with a random fill (offset
    and colour-scaled) and an anti-aliased edge.
    """
    _, h, w = fills[0].shape
    max_radius = max_radius or 0.5 * max(h, w)
    # Inverse-CDF sampling of the power law, until the shapes' areas add up to the coverage.
    a = 1.0 - alpha
    radii = []
    area = 0.0
    while area < coverage * h * w and len(radii) < 20_000:
        r = (min_radius**a + rng.uniform() * (max_radius**a - min_radius**a)) ** (1.0 / a)
        radii.append(r)
        area += math.pi * r * r
    image = fills[int(rng.integers(len(fills)))].copy()
    for radius in radii:
        kind = rng.choice(["disc", "disc", "square", "triangle"])
        aspect = math.exp(rng.uniform(-0.7, 0.7))
        angle = rng.uniform(0, math.pi)
        cx, cy = rng.uniform(-radius, w + radius), rng.uniform(-radius, h + radius)
        extent = radius * max(aspect, 1.0) * 1.5 + 1
        x0, x1 = max(0, int(cx - extent)), min(w, int(cx + extent) + 1)
        y0, y1 = max(0, int(cy - extent)), min(h, int(cy + extent) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        distance = _shape_distance(kind, xs - cx, ys - cy, radius, aspect, angle)
        coverage = np.clip(distance + 0.5, 0.0, 1.0)
        if not coverage.any():
            continue
        fill = fills[int(rng.integers(len(fills)))]
        # The fill seen through this leaf, shifted so leaves sharing a fill do not line up.
        dy, dx = int(rng.integers(h)), int(rng.integers(w))
        rows, cols = (np.arange(y0, y1) + dy) % h, (np.arange(x0, x1) + dx) % w
        patch = fill[:, rows][:, :, cols] * rng.uniform(0.6, 1.4, size=(3, 1, 1))
        region = image[:, y0:y1, x0:x1]
        region += (patch - region) * coverage[None]
    return image


def random_texture(rng: np.random.Generator, h: int, w: int, detail: float = 1.0) -> np.ndarray:
    """A natural-image-like texture ``(3, h, w)`` float32 in [0, 255] (see the module docstring).

    ``detail`` shrinks the smallest leaves (more, smaller regions).
    """
    fills = [random_fill(rng, h, w) for _ in range(int(rng.integers(3, 6)))]
    image = dead_leaves(rng, fills, coverage=rng.uniform(1.5, 3.0), min_radius=rng.uniform(2.0, 6.0) / detail)
    # Smooth illumination: shading and gradients across the scene.
    light = smooth_noise(rng, h, w, max(h, w) * rng.uniform(0.3, 1.0))
    image = image * (1.0 + rng.uniform(0.0, 0.6) * (light[None] - 0.5))
    return np.clip(image, 0.0, 255.0).astype(np.float32)
