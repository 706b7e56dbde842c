"""A frontal chest radiograph, drawn: thorax, lungs with vessel markings, ribs, clavicles,
heart and mediastinum, and pneumothorax where the lung has fallen away from the chest wall.

All geometry is in image fractions (x right, y down, both in [0, 1]), so any ``size`` draws the
same chest. Intensities follow MONOCHROME2: air dark, bone and soft tissue bright.

A pneumothorax is modelled as the lung collapsing towards its centre: along direction ``phi``
(0 = up to the apex, pi/2 = lateral) the lung shrinks by ``1 - s(phi)``. The air between the
chest wall and the collapsed lung has no markings and is darker; the visceral pleura of the
collapsed lung shows as a thin bright line. Lungs are convex, so the union of several
instances is exactly the collapse by the largest of them (masks and picture agree).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

SIDES = (-1, 1)  # image left (patient's right), image right (patient's left)


@dataclass(frozen=True)
class Lung:
    cx: float  # centre, image fractions
    cy: float
    a: float  # half width
    b: float  # half height
    p: float  # superellipse exponent (2 = ellipse, larger = squarer)
    dome: float  # diaphragm top, as a fraction of b below the centre
    side: int


@dataclass(frozen=True)
class Instance:
    """One pneumothorax: collapse of lung ``side`` by ``depth`` around direction ``phi``."""

    side: int
    phi: float  # radians from straight up towards the lateral chest wall
    width: float  # angular spread, radians
    depth: float  # largest fraction of the lung radius collapsed


def sample_lungs(rng: np.random.Generator) -> dict[int, Lung]:
    """Both lungs of one patient (jittered sizes and positions)."""
    a, b, cy = rng.uniform(0.14, 0.17), rng.uniform(0.25, 0.3), rng.uniform(0.44, 0.5)
    return {
        s: Lung(
            cx=0.5 + s * rng.uniform(0.18, 0.21),
            cy=cy + rng.uniform(-0.01, 0.01),
            a=a * rng.uniform(0.94, 1.06),
            b=b * rng.uniform(0.96, 1.04),
            p=rng.uniform(2.2, 2.8),
            dome=rng.uniform(0.5, 0.65) - (0.05 if s < 0 else 0.0),  # liver lifts the right
            side=s,
        )
        for s in SIDES
    }


MIN_DEPTH, MAX_DEPTH = 0.03, 0.5  # collapse, fraction of the lung radius: tiny .. large


def check_min_depth(min_depth: float) -> None:
    """Refuse a shallowest collapse outside [``MIN_DEPTH``, ``MAX_DEPTH``)."""
    if not MIN_DEPTH <= min_depth < MAX_DEPTH:
        raise ValueError(f"min_depth must be in [{MIN_DEPTH}, {MAX_DEPTH}), got {min_depth}")


def sample_instances(rng: np.random.Generator, min_depth: float = MIN_DEPTH) -> list[Instance]:
    """Pneumothorax instances of a positive image: mostly one, some two (apart or overlapping);
    each collapse depth log-uniform in [``min_depth``, ``MAX_DEPTH``] of the lung radius."""
    check_min_depth(min_depth)

    def one(side: int, phi: float | None = None) -> Instance:
        depth = float(np.exp(rng.uniform(np.log(min_depth), np.log(MAX_DEPTH))))
        return Instance(
            side=side,
            phi=rng.uniform(-0.2, 1.8) if phi is None else phi,
            width=rng.uniform(0.3, 1.0),
            depth=depth,
        )

    side = int(rng.choice(SIDES))
    kind = rng.random()
    first = one(side)
    if kind < 0.7:
        return [first]
    if kind < 0.85:  # bilateral: two separate instances
        return [first, one(-side)]
    # a second, overlapping outline of the same collapse (as two readers might draw it)
    return [first, one(side, phi=first.phi + rng.uniform(-0.5, 0.5) * first.width)]


def grid(size: int, shift: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in image fractions (float32 ``size x size``), moved by ``shift``."""
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = np.meshgrid(centres - np.float32(shift[0]), centres - np.float32(shift[1]))
    return x, y


def lung_level(x: np.ndarray, y: np.ndarray, lung: Lung) -> np.ndarray:
    """About the distance inside the lung boundary (image fractions; > 0 inside).

    The lung is a superellipse, narrower at the apex, above a parabolic diaphragm dome. Its
    boundary meets every ray from the centre once, so collapsing towards the centre keeps
    the collapsed lung inside the lung.
    """
    dy = (y - lung.cy) / lung.b
    dx = (x - lung.cx) / (lung.a * (0.9 + 0.12 * np.clip(dy, -1, 1)))
    radius = (np.abs(dx) ** lung.p + np.abs(dy) ** lung.p) ** (1 / lung.p)
    dome = lung.cy + lung.b * (lung.dome + 0.45 * ((x - lung.cx) / lung.a) ** 2)
    return np.minimum((1 - radius) * lung.a, dome - y)


def lung_box(lung: Lung, size: int, shift=(0.0, 0.0), margin: float = 0.02):
    """Row and column slices of the pixels the lung (shifted by ``shift``) can touch."""

    def span(centre: float, half: float) -> slice:
        low, high = (centre - half - margin) * size, (centre + half + margin) * size
        return slice(max(0, int(low)), min(size, int(np.ceil(high))))

    return span(lung.cy + shift[1], lung.b), span(lung.cx + shift[0], lung.a * 1.05)


def collapse_factor(x, y, lung: Lung, instances: list[Instance]) -> np.ndarray:
    """s(phi) in (0, 1]: the fraction of the lung radius left in each pixel's direction."""
    phi = np.arctan2(lung.side * (x - lung.cx), -(y - lung.cy))
    s = np.ones_like(x)
    for inst in instances:
        if inst.side != lung.side:
            continue
        delta = (phi - inst.phi + np.pi) % (2 * np.pi) - np.pi  # wrapped angle difference
        bump = np.exp(-0.5 * (delta / inst.width) ** 2)
        bump[bump < 0.05] = 0.0  # no hair-thin tails around the whole lung
        s = np.minimum(s, 1.0 - inst.depth * bump)
    return s


def collapsed_coords(x, y, lung: Lung, instances: list[Instance]):
    """Where each pixel of the collapsed lung sat before collapsing (scaled away from centre)."""
    s = collapse_factor(x, y, lung, instances)
    return lung.cx + (x - lung.cx) / s, lung.cy + (y - lung.cy) / s, s


def instance_mask(x: np.ndarray, y: np.ndarray, lung: Lung, inst: Instance) -> np.ndarray:
    """Boolean mask of one instance on the grid ``x, y``: lung minus the collapsed lung."""
    cx, cy, _ = collapsed_coords(x, y, lung, [inst])
    return (lung_level(x, y, lung) > 0) & (lung_level(cx, cy, lung) <= 0)


def _rotate(v: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate each row of ``v`` (N x 2) by its ``angle`` (N, radians)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1]], axis=1)


def vessel_texture(lung: Lung, size: int, seed: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Lung markings in anatomy coordinates: branching vessels from the hilum over a fine
    interstitial network. Returns the texture (float32, ~0..1) over the lung's box and the
    box origin ``(row, col)`` in pixels."""
    rng = np.random.default_rng(seed)
    rows, cols = lung_box(lung, size)
    origin = np.array([cols.start, rows.start], dtype=float)
    canvas = Image.new("F", (cols.stop - cols.start, rows.stop - rows.start), 0.0)
    draw = ImageDraw.Draw(canvas)
    trunks = np.deg2rad(np.linspace(-80, 80, 6) + rng.normal(0, 10, 6))  # fanning out
    heading = np.stack([lung.side * np.cos(trunks), np.sin(trunks)], axis=1)
    start = np.tile([lung.cx - lung.side * 0.55 * lung.a, lung.cy + 0.05 * lung.b], (6, 1))
    length, width, weight = rng.uniform(0.07, 0.09, 6), 0.008, 1.0
    for _ in range(7):  # one generation of branches at a time, all drawn as polylines
        points = [start]
        for _ in range(3):  # vessels meander
            heading = _rotate(heading, rng.normal(0, 0.18, len(heading)))
            points.append(points[-1] + heading * (length / 3)[:, None])
        line_width = max(1, int(round(width * size)))
        for branch in np.stack(points, axis=1) * size - origin:
            draw.line([tuple(p) for p in branch], fill=weight, width=line_width, joint="curve")
        # every branch forks in two, turning apart
        turn = rng.uniform(0.2, 0.6, len(heading)) * np.array([-1, 1])[:, None]
        heading = np.concatenate([_rotate(heading, turn[0]), _rotate(heading, turn[1])])
        start = np.concatenate([points[-1], points[-1]])
        length = np.concatenate([length, length]) * rng.uniform(0.7, 0.9, 2 * len(length))
        width, weight = width * 0.75, weight * 0.9
    vessels = ndimage.gaussian_filter(np.asarray(canvas), sigma=max(0.5, size / 900))
    noise = ndimage.gaussian_filter(rng.standard_normal(vessels.shape), sigma=size * 0.006)
    network = np.exp(-((noise / (noise.std() + 1e-9) / 0.3) ** 2))  # zero crossings: a mesh
    texture = np.clip(vessels, 0, 1) + 0.4 * network
    return texture.astype(np.float32), (rows.start, cols.start)
