"""Where points lie relative to what the cameras see: metres behind each camera's rendered depth.

The node asks this of every Occ3D voxel centre each frame (640 000 points, six cameras). The projection of a fixed
point set depends only on the rig's calibration, which does not change from frame to frame, so
:class:`GridProjection` keeps it; a frame then costs one bilinear read of the depth images and a minimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distillnerf.geometry import ego_to_pixel, transform_shared_points


@dataclass(frozen=True)
class ImageProjection:
    """Points [M] projected into N images of one size."""

    grid: Tensor  # [N, 1, M, 2] positions in grid_sample's normalised coordinates (align_corners=False)
    z: Tensor  # [N, M] camera z where the point falls inside the image in front of the camera, else +inf

    @classmethod
    def of(cls, points: Tensor, intrinsics: Tensor, cam_to_ego: Tensor, size: tuple[int, int]) -> "ImageProjection":
        """``points`` [M, 3] ego metres, cameras ([N, 3, 3] at ``size`` = (height, width), [N, 4, 4])."""
        h, w = size
        matrix = ego_to_pixel(intrinsics, cam_to_ego)
        # grid_sample's coordinates straight from the GEMM: u * 2/w - 1 = (u·w' * 2/w - w') / w' for homogeneous
        # w'; pixel u covers [u, u+1) and align_corners=False puts pixel centres at u + 0.5, as that convention needs
        scale = matrix.new_tensor([2.0 / w, 2.0 / h])[:, None]
        normalised = torch.cat([matrix[..., :2, :] * scale - matrix[..., 2:3, :], matrix[..., 2:, :]], dim=-2)
        gx, gy, depth, z = transform_shared_points(points, normalised).unbind(-2)  # each [N, M]
        depth = depth.clamp_min(1e-6)
        gx, gy = gx.div_(depth), gy.div_(depth)  # in place: fresh buffers this large cost page faults
        # inside the image (u in [0, w), v in [0, h)) and in front of the camera
        seen = (z > 0.1) & (gx >= -1.0) & (gx < 1.0) & (gy >= -1.0) & (gy < 1.0)
        grid = torch.stack([gx, gy], dim=-1)[:, None]
        return cls(grid.float(), torch.where(seen, z, torch.full_like(z, float("inf"))).float())


def surface_offset(projection: ImageProjection, depth: Tensor, valid: Tensor) -> Tensor:
    """[M] metres each point lies behind the rendered depth [N, h, w] of the valid cameras [N] it projects into
    (inside the image, in front of the camera), the least over them; +inf for points no valid camera sees. A point
    is camera-visible when the offset is at most the config's ``visibility_margin`` (not hidden behind a surface).

    The depth is read bilinearly at the point's sub-pixel position, not at the pixel it falls in: on ground seen at
    a grazing angle one render pixel spans metres of range (about 11 m at 40 m), and the pixel's own depth would
    carve or hide voxels of the very surface it sees."""
    valid = valid.to(torch.bool)
    if not bool(valid.any()):
        return torch.full(projection.z.shape[1:], float("inf"), device=depth.device)
    grid, z = projection.grid, projection.z
    if not bool(valid.all()):  # selecting copies the whole projection: only when a camera is missing
        grid, z, depth = grid[valid], z[valid], depth[valid]
    surface = F.grid_sample(depth[:, None].float(), grid, mode="bilinear", padding_mode="border",
                            align_corners=False)[:, 0, 0]
    return (z - surface).amin(dim=0)  # unseen: inf - finite = inf


class GridProjection:
    """The projection of a fixed point set (the Occ3D voxel centres), recomputed only when the calibration or the
    image size changes."""

    def __init__(self, points: Tensor) -> None:
        self.points = points
        self._key: tuple[Tensor, Tensor, tuple[int, int]] | None = None
        self._projection: ImageProjection | None = None

    def __call__(self, intrinsics: Tensor, cam_to_ego: Tensor, size: tuple[int, int]) -> ImageProjection:
        key = self._key
        if key is None or key[2] != tuple(size) or not (torch.equal(key[0], intrinsics)
                                                        and torch.equal(key[1], cam_to_ego)):
            self._projection = ImageProjection.of(self.points, intrinsics, cam_to_ego, size)
            self._key = (intrinsics.clone(), cam_to_ego.clone(), tuple(size))
        return self._projection
