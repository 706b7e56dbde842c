"""The anatomy of the CT phantom: one patient's chest and pneumothorax, in Hounsfield units.

Coordinates of a slice are fractions of the half field of view: ``u`` towards the patient's
left, ``v`` towards posterior; ``t`` runs along the body from the lung bases (0) to the
apices (1). Structures are ellipses with per-patient sizes and gentle shape harmonics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from datamodules.readers.dicom_series import LPS_TO_RAS

HU = {"air": -1000.0, "fat": -100.0, "muscle": 45.0, "soft": 35.0, "lung": -860.0}
HU |= {"blood": 40.0, "liver": 60.0, "cortex": 1000.0, "marrow": 230.0, "disc": 80.0}
# pneumothorax classes: (depth range as a fraction of the lung radius, half extent in t);
# long runs of slices, as in the paper's set where 72% of the slices show pneumothorax
SIZES = {
    "tiny": ((0.02, 0.045), (0.04, 0.1)),
    "small": ((0.05, 0.12), (0.12, 0.25)),
    "medium": ((0.13, 0.28), (0.2, 0.35)),
    "large": ((0.3, 0.5), (0.3, 0.45)),
}


@dataclass
class Pneumothorax:
    side: int  # -1: right lung (u < 0), +1: left lung
    depth: float  # deepest air pocket, as a fraction of the lung's radius
    t_center: float
    t_half: float
    angle: float  # centre of the pocket around the lung (radians, -pi/2 = anterior)
    width: float  # angular half width (radians)


@dataclass
class PatientAnatomy:
    body: tuple[float, float, float]  # semi-axes u, v and centre v
    fat: float
    lung: tuple[float, float, float]  # lateral centre, semi-axes (fractions of the body)
    lung_shape: np.ndarray  # per side: 2nd/3rd harmonic amplitudes and phases
    heart: tuple[float, float, float]  # semi-axes and leftward shift
    domes: tuple[float, float]  # t where the right/left diaphragm domes top out
    t_range: tuple[float, float]  # t of the lowest and highest slice
    noise_hu: float
    ptx: list[Pneumothorax] = field(default_factory=list)

    @classmethod
    def draw(cls, rng: np.random.Generator, index: int) -> PatientAnatomy:
        """Random anatomy; the pneumothorax pattern cycles with ``index`` so that even a few
        patients cover none, unilateral and bilateral, tiny to large."""
        # patterns that cycle with the index, each format (even/odd patients in a mixed
        # phantom) getting every kind and size; sizes lean large, as in the paper's set
        kind = "none" if index % 5 == 4 else "bilateral" if index % 3 == 2 else "unilateral"
        classes = ["large", "medium", "small", "large", "tiny", "medium"]
        sides = {"none": [], "unilateral": [rng.choice([-1, 1])], "bilateral": [-1, 1]}[kind]
        ptx = []
        for n, side in enumerate(sides):
            side = int(side)
            size_class = classes[(index // 2 + 3 * (index % 2) + n) % len(classes)]
            depth_range, half_range = SIZES[size_class]
            t_half = rng.uniform(*half_range)
            ptx.append(
                Pneumothorax(
                    side=side,
                    depth=rng.uniform(*depth_range),
                    t_center=rng.uniform(0.25 + t_half / 3, 0.8 - t_half / 3),
                    t_half=t_half,
                    angle=-np.pi / 2 + side * rng.uniform(0.1, 0.9),
                    width=rng.uniform(0.8, 1.6),
                )
            )
        right_dome = rng.uniform(0.2, 0.28)
        return cls(
            body=(rng.uniform(0.8, 0.9), rng.uniform(0.54, 0.62), rng.uniform(0.02, 0.07)),
            fat=rng.uniform(0.03, 0.07),
            lung=(rng.uniform(0.46, 0.5), rng.uniform(0.42, 0.46), rng.uniform(0.76, 0.82)),
            lung_shape=np.concatenate(
                [rng.uniform(-0.05, 0.05, (2, 2)), rng.uniform(0, 2 * np.pi, (2, 2))], axis=1
            ),
            heart=(rng.uniform(0.26, 0.32), rng.uniform(0.32, 0.4), rng.uniform(0.06, 0.14)),
            domes=(right_dome, right_dome - rng.uniform(0.02, 0.07)),
            t_range=(rng.uniform(-0.15, -0.05), rng.uniform(1.0, 1.08)),
            noise_hu=rng.uniform(12, 24),
            ptx=ptx,
        )


def _bspline_matrix(n_out: int, knots: int) -> np.ndarray:
    """n_out x knots weights of a cubic B-spline through ``knots`` evenly spread knots."""
    x = np.linspace(1, knots - 2, n_out)[:, None] - np.arange(knots)[None, :]
    d = np.abs(x)
    near, far = d < 1, (d >= 1) & (d < 2)
    weights = np.where(near, (4 - 6 * d**2 + 3 * d**3) / 6, 0) + np.where(far, (2 - d) ** 3 / 6, 0)
    return weights.astype(np.float32)


def _smooth_fields(rng, knots: list[tuple[int, int]], slices: int, size: int):
    """Smooth random 3-D fields (unit variance), yielded as a tuple of size x size planes
    per slice: cubic B-splines through (z, v, u) knots, two matrix products a plane."""
    planes = []
    for kz, kxy in knots:
        mz, mxy = _bspline_matrix(slices, kz), _bspline_matrix(size, kxy)
        # splines average neighbouring knots: divide by the mean variance they keep
        gain = np.sqrt(np.mean((mz**2).sum(1)) * np.mean((mxy**2).sum(1)) ** 2)
        low = rng.standard_normal((kz, kxy, kxy)).astype(np.float32)
        planes.append((np.einsum("zk,kij->zij", mz, low) / gain, mxy))
    for k in range(slices):
        yield tuple(m @ low[k] @ m.T for low, m in planes)


def _ellipse_q(u, v, cu, cv, au, av, angle=0.0):
    """Squared normalised radius of an (optionally rotated) ellipse at points (u, v)."""
    c, s = np.cos(angle), np.sin(angle)
    du, dv = u - cu, v - cv
    return ((du * c + dv * s) / au) ** 2 + ((dv * c - du * s) / av) ** 2


class _Canvas:
    """One slice being drawn, painted box by box so small structures cost little."""

    def __init__(self, grid: np.ndarray, vessels: list[np.ndarray], texture: np.ndarray) -> None:
        self.grid, self.vessels, self.texture = grid, vessels, texture
        self.hu = np.full((len(grid), len(grid)), HU["air"], dtype=np.float32)
        self.label = np.zeros(self.hu.shape, dtype=np.uint8)

    def box(self, cu, cv, ru, rv):
        """Index box (rows, columns) around [cu +- ru] x [cv +- rv], with its u and v."""
        g = self.grid
        cols = slice(np.searchsorted(g, cu - ru), np.searchsorted(g, cu + ru, side="right"))
        rows = slice(np.searchsorted(g, cv - rv), np.searchsorted(g, cv + rv, side="right"))
        return (rows, cols), g[None, cols], g[rows, None]

    def ellipse(self, cu, cv, au, av, angle=0.0):
        box, u, v = self.box(cu, cv, max(au, av), max(au, av))
        return box, _ellipse_q(u, v, cu, cv, au, av, angle)

    def paint(self, ellipse, value, below=1.0) -> None:
        box, q = ellipse
        self.hu[box][q < below] = value

    def bone(self, ellipse, marrow=0.5) -> None:
        """Cortex on the rim, marrow inside."""
        self.paint(ellipse, HU["cortex"])
        self.paint(ellipse, HU["marrow"], marrow)


def _ptx_depth(a: PatientAnatomy, side: int, t: float, phi: np.ndarray) -> np.ndarray:
    """Depth of the air pocket (fraction of the lung radius) around the lung at ``t``."""
    depth = np.zeros(phi.shape, dtype=np.float32)
    for p in a.ptx:
        if p.side == side and abs(t - p.t_center) < p.t_half:
            along = np.sqrt(1 - ((t - p.t_center) / p.t_half) ** 2)
            turn = np.angle(np.exp(1j * (phi - p.angle)))
            around = np.sqrt(np.clip(1 - (turn / p.width) ** 2, 0, 1))
            depth = np.maximum(depth, p.depth * along * around)
    return depth


def _draw_lung(c: _Canvas, a: PatientAnatomy, n: int, t: float, rho_b, inner, medial) -> None:
    """Lung ``n`` (0 right, 1 left), its diaphragm dome and its pneumothorax, if any."""
    side, (ax, ay, cy), (lcu, lsu, lsv) = (-1, 1)[n], a.body, a.lung
    ax *= 0.95 + 0.08 * t
    scale = np.clip(1 - t, 0, 1) ** 0.45  # lungs taper to the apex
    if scale < 0.05:
        return
    su, sv = lsu * ax * max(scale, 1e-3), lsv * ay * (0.35 + 0.65 * scale)
    cu, cv = side * lcu * ax * (0.75 + 0.25 * scale), cy - 0.02 * ay
    box, u, v = c.box(cu, cv, 1.15 * su, 1.15 * sv)
    xi, eta = (u - cu) / su, (v - cv) / sv
    phi = np.arctan2(eta, xi)
    c2, c3, p2, p3 = a.lung_shape[n]
    r = np.hypot(xi, eta) / (1 + c2 * np.cos(2 * phi + p2) + c3 * np.cos(3 * phi + p3))
    rho = np.maximum(r, rho_b[box] / inner)  # the lung fills the chest wall's inside
    dome_top = a.domes[n]
    dome = np.hypot(xi, eta + 0.1) < (np.sqrt(1 - t / dome_top) if t < dome_top else 0.0)
    hu, label = c.hu[box], c.label[box]
    hu[dome & (rho_b[box] < inner)] = HU["liver"] if side < 0 else HU["soft"]
    lung = (rho < 1) & ~medial(u, v) & ~dome
    depth = _ptx_depth(a, side, t, phi)
    pocket = lung & (rho > 1 - depth)
    hilum = np.exp(-((xi + side * 0.75) ** 2 + eta**2) / (2 * 0.45**2))
    # vessels: tubes where two smooth random fields are both near zero (dots and short
    # branches in a slice), wide and dense at the hilum, thin towards the periphery
    g1, g2, f1, f2 = (field[box] for field in c.vessels)
    vessel = np.exp(-(g1**2 + g2**2) / (0.05 + 0.25 * hilum) ** 2) * (0.5 + 0.5 * hilum)
    vessel = np.maximum(vessel, np.exp(-(f1**2 + f2**2) / 0.25**2) * (1 - 0.4 * r.clip(0, 1)))
    radius_px = min(su, sv) * len(c.grid) / 2
    pleura = np.exp(-(((rho - (1 - depth)) * radius_px / 0.8) ** 2)) * (depth > 0.003)
    # collapsed lung is denser; the visceral pleura shows as a thin line at its edge
    tissue = HU["lung"] + 30 * eta + 15 * c.texture[box] + 250 * depth.max(initial=0) + 500 * pleura
    tissue += (HU["blood"] - tissue) * vessel
    hu[lung] = tissue[lung]
    hu[pocket] = HU["air"]
    label[pocket] = n + 1


def _draw_slice(c: _Canvas, a: PatientAnatomy, t: float) -> None:
    """Paint one axial slice at body position ``t`` onto the canvas (HU and label)."""
    ax, ay, cy = a.body
    ax *= 0.95 + 0.08 * t  # wider towards the shoulders
    u, v = c.grid[None, :], c.grid[:, None]
    bu, bv = u / ax, (v - cy) / ay
    r2 = bu**2 + bv**2 + 1e-12
    rho_b = np.sqrt(r2) / (1 + 0.02 * (bu**2 - bv**2) / r2)  # 2nd harmonic: cos(2 phi)
    inner = 1 - a.fat - 0.07  # inside of the chest wall (muscle and ribs)
    for edge, value, grain in (
        (1, HU["fat"], 10),
        (1 - a.fat, HU["muscle"], 5),
        (inner, HU["soft"], 8),
    ):
        inside = rho_b < edge
        c.hu[inside] = value + grain * c.texture[inside]
    vy, rv = cy + 0.52 * ay, 0.075  # vertebral body centre and radius
    hx, hy, shift = a.heart
    heart_scale = max(np.sin(np.pi * np.clip((t - 0.08) / 0.55, 0, 1)) ** 0.6, 1e-3)
    heart = (shift * ax, cy - 0.12 * ay, hx * ax * heart_scale, hy * ay * heart_scale)

    def medial(u, v):  # heart, mediastinum and spine: where the lungs stop
        near_heart = _ellipse_q(u, v, *heart) < 1.25
        return near_heart | ((np.abs(u) < 0.09 * ax) & (v < vy)) | (np.hypot(u, v - vy) < rv + 0.06)

    for n in (0, 1):
        _draw_lung(c, a, n, t, rho_b, inner, medial)
    if heart_scale > 0.05:
        c.paint(c.ellipse(*heart), HU["fat"], 1.2)  # pericardial fat
        c.paint(c.ellipse(*heart), HU["blood"])
    for cu, cv, radius, value, top in (
        (0.07 * ax, vy - rv - 0.05, 0.045, HU["blood"], 0.85),  # descending aorta
        (0.06 * ax, cy - 0.2 * ay, 0.055, HU["blood"], -0.45),  # ascending aorta (t > 0.45)
        (-0.07 * ax, cy - 0.2 * ay, 0.04, HU["blood"], -0.45),  # superior vena cava
        (0.0, vy - rv - 0.08, 0.04, HU["air"], -0.6),  # trachea
    ):
        if (top > 0 and t < top) or (top < 0 and t > -top):
            c.paint(c.ellipse(cu, cv, radius, radius), value)
    disc = np.sin(2 * np.pi * 9 * t) > 0.8  # an intervertebral disc instead of marrow
    c.bone(c.ellipse(0, vy, rv, rv), 0.75)
    if disc:
        c.paint(c.ellipse(0, vy, rv, rv), HU["disc"], 0.75)
    canal = vy + rv + 0.04
    c.bone(c.ellipse(0, canal + 0.07, 0.014, 0.045))  # spinous process
    for side in (-1, 1):
        c.bone(c.ellipse(side * 0.075, canal - 0.005, 0.045, 0.014))  # transverse processes
    c.paint(c.ellipse(0, canal, 0.035, 0.035), HU["soft"] - 20)  # spinal canal
    ribs = 1 - a.fat - 0.035
    for m in range(12):
        theta = 2 * np.pi * (m + 0.5) / 12 + 0.5 * t
        gap = min(abs(np.angle(np.exp(1j * (theta - g)))) for g in (np.pi / 2, -np.pi / 2))
        if gap < 0.35 or np.cos(2 * np.pi * (4.5 * t + 0.23 * m)) < -0.2:
            continue  # no rib at the spine and the sternum, nor between ribs
        cu, cv = ax * ribs * np.cos(theta), cy + ay * ribs * np.sin(theta)
        tangent = np.arctan2(ay * np.cos(theta), -ax * np.sin(theta))
        c.bone(c.ellipse(cu, cv, 0.04, 0.016, tangent))
    if 0.25 < t < 0.95:
        c.bone(c.ellipse(0, cy - ay * ribs, 0.05, 0.016))  # sternum
    box, u, v = c.box(0, cy + ay + 0.05, 0.8, 0.012)  # the scanner table
    c.hu[box][rho_b[box] > 1] = 200.0
    c.label[c.hu != HU["air"]] = 0  # a rib drawn over a pocket's edge is no longer air


def draw_patient(a: PatientAnatomy, size: int, slices: int, rng: np.random.Generator):
    """The patient's volume: HU (float32) and label (uint8: 0, 1 right, 2 left), both in
    LPS voxel order (x, y, z) = (left, posterior, superior), and the RAS+ affine in mm."""
    grid = (np.arange(size, dtype=np.float32) - (size - 1) / 2) / (size / 2)
    hu = np.empty((size, size, slices), dtype=np.float32)
    label = np.empty((size, size, slices), dtype=np.uint8)
    ts = np.linspace(*a.t_range, slices)
    knots = [(12, 14), (12, 14), (24, 36), (24, 36), (8, 10)]  # (z, in-plane) per field
    fields = _smooth_fields(rng, knots, slices, size)
    for k, (t, (*vessels, texture)) in enumerate(zip(ts, fields, strict=True)):
        canvas = _Canvas(grid, vessels, texture)
        _draw_slice(canvas, a, t)
        image = ndimage.gaussian_filter(canvas.hu, 0.6)  # the scanner's point spread
        noise = rng.standard_normal(image.shape).astype(np.float32)
        noise = ndimage.gaussian_filter(noise, 0.7)  # CT noise is correlated over ~2 pixels
        image += noise * (a.noise_hu / max(float(noise.std()), 1e-6))
        hu[:, :, k], label[:, :, k] = image.T, canvas.label.T
    fov = rng.uniform(330, 400)  # mm
    thickness = rng.uniform(220, 280) * (a.t_range[1] - a.t_range[0]) / max(slices - 1, 1)
    lps = np.diag([fov / size, fov / size, thickness, 1.0])
    lps[:3, 3] = [-fov / 2, -fov / 2 + rng.uniform(-20, 20), rng.uniform(-700, -400)]
    return hu, label, LPS_TO_RAS @ lps
