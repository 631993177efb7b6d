"""Colours of hits and sky: procedural textures (in object-local coordinates), sun and ambient light, haze.

Textures are functions of the hit's texture coordinates, which move with their object, so a surface looks the same
from every camera and at every time: photometric consistency holds exactly (no shadows or specular highlights).
"""

from __future__ import annotations

import numpy as np

from distillnerf_train.synth.raycast import Hits
from distillnerf_train.synth.scene import CHECKER, NOISE, ROAD, STRIPES, WINDOWS, Scene

# Fixed wave vectors of the sum-of-sines noise (varied directions and scales, no common period).
_WAVES = np.array([[1.00, 0.31, 0.57], [-0.43, 1.71, 0.29], [2.93, -1.37, 1.11], [0.77, 3.81, -2.19],
                   [-6.13, 2.47, 3.37], [5.21, 7.43, -4.09]])
_PHASES = np.array([0.3, 1.7, 4.1, 2.2, 5.5, 0.9])


def noise(p: np.ndarray) -> np.ndarray:
    """Smooth pseudo-random field in [-1, 1] of points (N, 3)."""
    weights = 1.0 / np.arange(1, len(_WAVES) + 1) ** 0.7
    value = np.sin(p @ _WAVES.T + _PHASES) @ weights
    return value / weights.sum()


def albedo(scene: Scene, hits: Hits, mask: np.ndarray) -> np.ndarray:
    """Surface colours (N, 3) of the hits selected by ``mask``."""
    mats = scene.materials
    m = hits.material[mask]
    p = hits.texture_coords[mask]
    n = hits.normal[mask]
    scale = mats.scale[m][:, None]
    contrast = mats.contrast[m]
    colour = mats.base[m] * (1.0 + contrast * noise(p / scale))[:, None]
    pattern = mats.pattern[m]

    stripes = pattern == STRIPES
    if stripes.any():
        band = (np.floor(p[stripes, 2] / scale[stripes, 0]) % 2 == 0)[:, None]
        colour[stripes] = np.where(band, colour[stripes], mats.second[m[stripes]])
    checker = pattern == CHECKER
    if checker.any():
        q = np.floor(p[checker] / scale[checker]).sum(axis=1) % 2
        colour[checker] *= (1.0 - contrast[checker] * q)[:, None]
    windows = pattern == WINDOWS
    if windows.any():
        pw, nw, s = p[windows], n[windows], scale[windows, 0]
        along = np.where(np.abs(nw[:, 0]) > np.abs(nw[:, 1]), pw[:, 1], pw[:, 0])
        fu = (along / (0.8 * s)) % 1.0
        fz = (pw[:, 2] / s) % 1.0
        pane = (fu > 0.25) & (fu < 0.75) & (fz > 0.3) & (fz < 0.8) & (np.abs(nw[:, 2]) < 0.5)
        colour[windows] = np.where(pane[:, None], mats.second[m[windows]], colour[windows])
    road = pattern == ROAD
    if road.any() and scene.markings:
        x, y = p[road, 0], p[road, 1]
        paint = np.zeros(x.shape, bool)
        for line_y, dashed in scene.markings:
            on = np.abs(y - line_y) < scene.marking_width / 2
            if dashed:
                on &= (x % scene.dash_period) < scene.dash_length
            paint |= on
        colour[road] = np.where(paint[:, None], scene.materials.base[scene.marking_material], colour[road])
    return np.clip(colour, 0.0, 1.0)


def sky(scene: Scene, dirs: np.ndarray) -> np.ndarray:
    """Sky colours (N, 3) of ray directions (N, 3): horizon-to-zenith gradient and a glow around the sun."""
    light = scene.lighting
    up = np.sqrt(np.clip(dirs[:, 2], 0.0, 1.0))[:, None]
    colour = light.sky_horizon * (1.0 - up) + light.sky_zenith * up
    glow = np.clip(dirs @ light.sun_direction, 0.0, 1.0) ** 64
    return np.clip(colour + 0.6 * glow[:, None], 0.0, 1.0)


def shade(scene: Scene, hits: Hits, dirs: np.ndarray) -> np.ndarray:
    """Linear-ish RGB image (..., 3) in [0, 1] for the rays ``dirs`` and their ``hits``."""
    light = scene.lighting
    out = np.empty(dirs.shape)
    mask = hits.hit
    if mask.any():
        base = albedo(scene, hits, mask)
        lambert = np.clip(hits.normal[mask] @ light.sun_direction, 0.0, 1.0)
        lit = base * (light.ambient + light.sun_intensity * lambert)[:, None]
        haze = (1.0 - np.exp(-hits.distance[mask] / light.haze_distance))[:, None]
        out[mask] = lit * (1.0 - haze) + light.sky_horizon * haze
    if (~mask).any():
        out[~mask] = sky(scene, dirs[~mask])
    return np.clip(out, 0.0, 1.0)


def lidar_intensity(scene: Scene, hits: Hits, dirs: np.ndarray) -> np.ndarray:
    """nuScenes-like intensity in [0, 255]: reflectance times the cosine of incidence (lane paint is bright)."""
    mask = hits.hit
    intensity = np.zeros(hits.distance.shape)
    if mask.any():
        reflect = scene.materials.reflectance[hits.material[mask]]
        colour = albedo(scene, hits, mask)
        reflect = reflect * (0.5 + colour.mean(axis=1))
        cosine = np.abs(np.einsum("ij,ij->i", hits.normal[mask], dirs[mask]))
        intensity[mask] = np.clip(255.0 * reflect * (0.2 + 0.8 * cosine), 0.0, 255.0)
    return intensity
