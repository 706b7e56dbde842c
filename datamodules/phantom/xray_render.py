"""Rendering one phantom chest radiograph: attenuation of each structure, then film response.

Attenuation adds up along the beam: soft tissue of the thorax, minus the air of the lungs
(and more air where a pneumothorax is), plus vessels, heart, mediastinum, spine, ribs and
clavicles. The detector maps it to brightness with ``1 - exp(-k A)``, then blur, quantum noise
and a per-image exposure (contrast, offset, gamma) make no two images alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from datamodules.phantom.xray_anatomy import (
    Instance,
    Lung,
    collapsed_coords,
    grid,
    lung_box,
    lung_level,
    sample_lungs,
    vessel_texture,
)


@dataclass(frozen=True)
class Chest:
    """One patient's anatomy, shared by all their images (image fractions)."""

    lungs: dict[int, Lung]
    heart: tuple[float, float, float, float, float]  # centre x, y, half axes a, b, tilt (rad)
    rib_top: float  # height of the first posterior rib at the spine
    rib_step: float  # spacing of posterior ribs
    clavicle_y: float
    body_a: float  # half width of the thorax
    texture_seed: int


def sample_chest(rng: np.random.Generator) -> Chest:
    """A random patient: lung and heart sizes, rib spacing, build."""
    return Chest(
        lungs=sample_lungs(rng),
        heart=(
            0.5 + rng.uniform(0.05, 0.08),
            rng.uniform(0.56, 0.6),
            rng.uniform(0.13, 0.16),
            rng.uniform(0.1, 0.12),
            rng.uniform(-0.6, -0.3),
        ),
        rib_top=rng.uniform(0.14, 0.18),
        rib_step=rng.uniform(0.058, 0.068),
        clavicle_y=rng.uniform(0.15, 0.19),
        body_a=rng.uniform(0.43, 0.48),
        texture_seed=int(rng.integers(2**31)),
    )


def _ramp(level: np.ndarray, edge: float) -> np.ndarray:
    """0 -> 1 across ``level = 0`` over ``edge``: anti-aliased inside of an implicit region."""
    return np.clip(level / edge + 0.5, 0.0, 1.0)


def _band(distance: np.ndarray, half, edge: float) -> np.ndarray:
    """1 where ``|distance| < half``, with soft edges ``edge`` wide."""
    return _ramp(half - np.abs(distance), edge)


def _bones(x: np.ndarray, y: np.ndarray, chest: Chest, edge: float) -> np.ndarray:
    """Attenuation of ribs (posterior and faint anterior), clavicles and spine."""
    lateral = np.abs(x - 0.5)
    reach = _band(lateral - 0.25, 0.21, 0.02) * (lateral > 0.02)  # spine .. chest wall
    bones = np.zeros_like(x)
    rows = y[:, 0]
    for k in range(11):
        y0 = chest.rib_top + k * chest.rib_step
        band = (rows > y0 - 0.04) & (rows < y0 + 0.28)  # only the rows this rib can reach
        lat, yy, r = lateral[band], y[band], reach[band]
        half = 0.008 + 0.014 * lat
        d = yy - (y0 - 0.08 * lat + 0.85 * lat**2)  # rises from the spine, bows down laterally
        cortex = np.exp(-(((np.abs(d) - half) / 0.0025) ** 2))
        bones[band] += r * (0.09 * _band(d, half, edge) + 0.05 * cortex)
        anterior = y0 + 0.06 + 0.4 * (0.44 - lat)  # runs down towards the sternum
        bones[band] += 0.04 * r * _band(yy - anterior, 0.012, edge) * (lat > 0.14)
    clavicle = chest.clavicle_y + 0.05 - 0.3 * lateral + 0.35 * lateral**2
    bones += 0.22 * _band(y - clavicle, 0.012, edge) * _band(lateral - 0.19, 0.15, 0.02)
    vertebrae = 0.5 + 0.5 * np.cos(2 * np.pi * (y - chest.rib_top) / chest.rib_step)
    return bones + _band(x - 0.5, 0.03, edge) * (0.12 + 0.05 * vertebrae)


def _heart_and_mediastinum(x: np.ndarray, y: np.ndarray, chest: Chest, edge: float):
    cx, cy, a, b, tilt = chest.heart
    u = (x - cx) * np.cos(tilt) + (y - cy) * np.sin(tilt)
    v = -(x - cx) * np.sin(tilt) + (y - cy) * np.cos(tilt)
    heart = _ramp((1 - np.sqrt((u / a) ** 2 + (v / b) ** 2)) * b, edge * 3)
    width = 0.05 + 0.06 * np.clip((y - 0.25) / 0.4, 0, 1)  # widens towards the heart
    mediastinum = _band(x - 0.5, width, edge * 4) * _ramp(y - 0.12, 0.05)
    knob = _ramp(0.025 - np.hypot(x - 0.545, y - 0.32), edge * 2)  # aortic knob
    trachea = _band(x - 0.5, 0.012, edge) * _band(y - 0.24, 0.18, 0.02)
    return 0.25 * heart + 0.3 * mediastinum + 0.15 * knob - 0.22 * trachea


def render_radiograph(
    chest: Chest,
    instances: list[Instance],
    size: int,
    rng: np.random.Generator,
    shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """A ``size x size`` float32 radiograph in [0, 1] with the given pneumothorax instances."""
    x, y = grid(size, shift)
    edge = 1.2 / size  # anti-aliasing width of hard edges: about one pixel
    body = (1 - (np.abs((x - 0.5) / chest.body_a) ** 4 + np.abs((y - 0.62) / 0.64) ** 4)) * 0.1
    att = _ramp(body, 0.004) * (1.0 - 0.3 * ((x - 0.5) / chest.body_a) ** 2)
    att += _heart_and_mediastinum(x, y, chest, edge) + _bones(x, y, chest, edge)
    density = _smooth_field(rng, size, cells=6)  # uneven overlying soft tissue
    for lung in chest.lungs.values():
        box = lung_box(lung, size, shift)
        att[box] += lung_attenuation(x[box], y[box], lung, instances, chest, density[box], size)
    image = 1.0 - np.exp(-1.8 * np.clip(att, 0, None))
    return _expose(image, size, rng)


def lung_attenuation(x, y, lung, instances, chest: Chest, density, size: int) -> np.ndarray:
    """Attenuation change of one lung on the grid ``x, y``: air, markings, pneumothorax and
    pleural line (``density``: overlying tissue variation, same shape)."""
    edge = 1.2 / size
    level = lung_level(x, y, lung)
    cx, cy, s = collapsed_coords(x, y, lung, instances)
    collapsed_level = lung_level(cx, cy, lung)
    inside, collapsed = _ramp(level, edge), _ramp(collapsed_level, edge)
    texture, (r0, c0) = vessel_texture(lung, size, chest.texture_seed + lung.side)
    # the collapsed lung carries its vessels inwards: sample them where they came from
    at = [cy * size - 0.5 - r0, cx * size - 0.5 - c0]
    markings = ndimage.map_coordinates(texture, at, order=1, mode="constant")
    hilum = np.hypot(cx - (lung.cx - lung.side * 0.55 * lung.a), cy - lung.cy)
    strength = 0.5 + 0.5 * np.exp(-((hilum / 0.16) ** 2))  # markings fade to the periphery
    base = 0.07 * np.clip((y - lung.cy) / lung.b + 0.3, 0, 1.3)  # bases lie under more tissue
    out = -0.6 * inside + inside * (base + 0.05 * density)
    out += collapsed * (0.16 * strength * markings + 0.05 * (1 - s))  # collapsed = denser
    pneumothorax = (level > 0) & (collapsed_level <= 0)
    # Pleural air: no parenchyma at all. Aerated lung (~0.25 g/cm3) attenuates about a quarter
    # as much as the soft tissue its air replaced (the -0.6 above: 0.75 of the lung's
    # thickness), so where the lung has fallen away that quarter goes too: 0.6 / 3 = 0.2.
    out -= 0.2 * (inside - collapsed)
    return out + 0.12 * _pleural_line(collapsed_level > 0, pneumothorax, size)


def _pleural_line(collapsed: np.ndarray, pneumothorax: np.ndarray, size: int) -> np.ndarray:
    """The visceral pleura: the collapsed lung's edge facing the air, ~2 px at 1024."""
    if not pneumothorax.any():
        return np.zeros(collapsed.shape, dtype=np.float32)
    k = max(1, round(size / 600))
    rim = collapsed & ~ndimage.binary_erosion(collapsed, iterations=k)
    line = rim & ndimage.binary_dilation(pneumothorax, iterations=k + 1)
    return ndimage.gaussian_filter(line.astype(np.float32), sigma=max(0.5, size / 1400))


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A smooth random field (unit std, float32 ``size x size``) from a coarse grid."""
    coarse = Image.fromarray(rng.standard_normal((cells, cells)).astype(np.float32))
    return np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC))


def _expose(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Detector blur, uneven exposure, quantum noise and per-image contrast/offset/gamma."""
    image = ndimage.gaussian_filter(image, sigma=max(0.4, size / 900))
    image = image + 0.03 * _smooth_field(rng, size, cells=4)
    image = image + rng.normal(0, 0.012, image.shape).astype(np.float32)
    contrast, offset = rng.uniform(0.85, 1.1), rng.uniform(-0.05, 0.05)
    gamma = rng.uniform(0.8, 1.25)
    return np.clip((image - 0.5) * contrast + 0.5 + offset, 0.0, 1.0) ** gamma
