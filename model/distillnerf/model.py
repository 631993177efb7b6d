"""DistillNeRF: six images of one instant -> sparse voxel neural field -> rendered depth, RGB and features.

Stages (the paper's Table 7 rows, named as the timer reports them):
``encode`` single-view encoding (backbone, FPN, two-stage depth), ``fusion`` lifting and multi-view pooling into
sparse voxels, ``voxel_conv`` sparse convolutions, ``render`` projection and ray marching, ``decode`` CNN decoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillnerf.config import ModelConfig
from distillnerf.depth import DepthHeads, lift_points
from distillnerf.decoder import RGBDecoder
from distillnerf.encoders import ImageEncoder
from distillnerf.field import FieldHeads, SparseVoxelField
from distillnerf.geometry import contract, pixel_rays, scale_intrinsics
from distillnerf.renderer import ray_samples, render_rays
from distillnerf.timing import NullTimer
from distillnerf.voxels import HierarchicalVoxelConv, LiftedPoints, VoxelLevel, quantise


class DistillNeRF(nn.Module):
    """``forward(images [B,N,3,H,W] in 0..1, intrinsics [B,N,3,3] at input size, cam_to_ego [B,N,4,4],
    camera_valid [B,N] bool or None, timer=None) -> dict`` (keys in docs/model.md). Dropped cameras are left out of
    the voxel fusion but still rendered. ``timer`` (a :class:`distillnerf.timing.StageTimer`) records the stages."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config.validate()
        self.encoder = ImageEncoder(config)
        self.depth = DepthHeads(config)
        self.voxel_conv = HierarchicalVoxelConv(config.level_channels + 1, config.conv_hidden,
                                                config.conv_layers_fine, config.conv_layers_coarse)
        self.heads = FieldHeads(config)
        self.decoder = RGBDecoder(config)

    # -- stages -------------------------------------------------------------------------------------------------
    def build_field(self, lifted: LiftedPoints, batch_size: int) -> SparseVoxelField:
        """Pool lifted depth candidates into the two sparse levels: the coarse level takes the pixel features'
        first ``level_channels``, the fine level the rest, each weighted by probability, then the density logit."""
        c = self.config
        coords = self.field_contract(lifted.points)
        fine_index = quantise(coords, c.fine_resolution)
        # a shift, not a floor division: the resolutions are powers of two and the indices non-negative
        coarse_index = fine_index >> ((c.fine_resolution // c.coarse_resolution).bit_length() - 1)
        level = c.level_channels
        coarse = VoxelLevel.from_lifted(lifted, coarse_index, slice(0, level), c.coarse_resolution, batch_size)
        fine = VoxelLevel.from_lifted(lifted, fine_index, slice(level, 2 * level), c.fine_resolution, batch_size)
        return SparseVoxelField(coarse, fine, batch_size, c.contraction_radius_xy, c.contraction_radius_z,
                                c.contraction_alpha)

    def field_contract(self, points: Tensor) -> Tensor:
        c = self.config
        return contract(points, c.contraction_radius_xy, c.contraction_radius_z, c.contraction_alpha)

    def forward(self, images: Tensor, intrinsics: Tensor, cam_to_ego: Tensor, camera_valid: Tensor | None = None,
                timer=None, render_features: bool | None = None) -> dict:
        c = self.config
        # Rendered foundation-feature images cost the feature head on every voxel; inference that only queries
        # voxels (the node) asks for none. Default: render them whenever the model has the head.
        render_features = c.feature_head if render_features is None else (render_features and c.feature_head)
        timer = timer or NullTimer()
        b, n, _, height, width = images.shape
        bn = b * n
        intrinsics = intrinsics.to(images.dtype).reshape(bn, 3, 3)
        cam_to_ego = cam_to_ego.to(images.dtype).reshape(bn, 4, 4)
        camera_batch = torch.arange(b, device=images.device).repeat_interleave(n)  # [BN]

        with timer.stage("encode"):
            # channels-last: oneDNN's convolutions (above all their backward) run faster on it, same values
            features = self.encoder(images.reshape(bn, 3, height, width).contiguous(memory_format=torch.channels_last))
            fh, fw = features.shape[-2:]
            k_feat = scale_intrinsics(intrinsics, fw / width, fh / height)
            origins, directions, z_per_distance = pixel_rays(k_feat, cam_to_ego, fh, fw)
            coarse_distance, coarse_weights, _ = self.depth.coarse(features)
            candidates, probability, density_logit = self.depth.fine(features, coarse_distance)
            image_features = self.depth.image_features(features)

        with timer.stage("fusion"):
            k = candidates.shape[-1]
            per_camera = fh * fw * k
            points = lift_points(origins, directions, candidates).reshape(bn, per_camera, 3)
            point_batch = camera_batch[:, None].expand(bn, per_camera)
            # point -> its pixel's row in the [BN*h*w, C] feature table (the K candidates of a pixel are adjacent)
            pixel = torch.arange(bn * fh * fw, device=images.device).repeat_interleave(k).reshape(bn, per_camera)
            probability, density_logit = probability.reshape(bn, per_camera), density_logit.reshape(bn, per_camera)
            if camera_valid is not None:
                keep = camera_valid.reshape(bn).to(torch.bool)
                points, point_batch, pixel = points[keep], point_batch[keep], pixel[keep]
                probability, density_logit = probability[keep], density_logit[keep]
            lifted = LiftedPoints(points.reshape(-1, 3), point_batch.reshape(-1), probability.reshape(-1),
                                  density_logit.reshape(-1), pixel.reshape(-1), image_features.reshape(bn * fh * fw, -1))
            field = self.build_field(lifted, b)

        with timer.stage("voxel_conv"):
            field.coarse, field.fine = self.voxel_conv(field.coarse, field.fine, b)

        with timer.stage("render"):
            self.heads.decode(field, foundation=render_features or c.coordinate_head)
            h, w = c.render_height, c.render_width
            k_render = scale_intrinsics(intrinsics, w / width, h / height)
            r_origins, r_directions, r_z = pixel_rays(k_render, cam_to_ego, h, w)
            weights_grid = coarse_weights.permute(0, 3, 1, 2)
            if (fh, fw) != (h, w):
                weights_grid = F.adaptive_avg_pool2d(weights_grid, (h, w)) if fh >= h else F.interpolate(
                    weights_grid, size=(h, w), mode="bilinear", align_corners=False)
            weights_grid = weights_grid.permute(0, 2, 3, 1).reshape(bn * h * w, -1)
            t = ray_samples(self.depth.edges, weights_grid.detach(), c, jitter=self.training and c.jitter_samples)
            channels = ("render", "features") if render_features else ("render",)
            rays = render_rays(self.heads, field, camera_batch.repeat_interleave(h * w),
                               r_origins.reshape(-1, 3), r_directions.reshape(-1, 3), t, c.far, channels,
                               c.early_stop_transmittance, c.march_chunk)
            z = r_z.reshape(bn, h, w)
            depth = rays["distance"].reshape(bn, h, w) * z

        with timer.stage("decode"):
            render = rays["render"].reshape(bn, h, w, -1).permute(0, 3, 1, 2)
            depth_code = (depth / c.far)[:, None]
            rgb = self.decoder(torch.cat([render, depth_code], dim=1).contiguous(memory_format=torch.channels_last))

        coarse_depth = (coarse_distance * z_per_distance)[:, None]
        if (fh, fw) != (height, width):
            coarse_depth = F.interpolate(coarse_depth, size=(height, width), mode="bilinear", align_corners=False)
        s = t.shape[-1]
        out = {
            "depth": depth.reshape(b, n, h, w),
            "opacity": rays["opacity"].reshape(b, n, h, w),
            "rgb": rgb.reshape(b, n, 3, height, width),
            "coarse_depth": coarse_depth.reshape(b, n, height, width),
            "render_intrinsics": k_render.reshape(b, n, 3, 3),
            "weights": rays["weights"].reshape(b, n, h, w, s),
            "samples": rays.get("samples"),  # contributing samples (ray index over [B*N*h*w], row, weight)
            "sample_depths": (t * r_z.reshape(-1, 1)).reshape(b, n, h, w, s),
            "field": field,
        }
        if render_features:
            out["features"] = rays["features"].reshape(b, n, h, w, -1).permute(0, 1, 4, 2, 3)
        if c.coordinate_head:
            out.update(self._coordinate_outputs(field))
        return out

    def _coordinate_outputs(self, field: SparseVoxelField) -> dict[str, Tensor]:
        """FeatureNeRF's cycle branch: regress each fine voxel centre (contracted) from its 3D descriptor."""
        vc, vf = field.num_voxels
        batch, centres = self.heads.fine_voxel_centres(field)
        rows = torch.arange(vf, device=centres.device)
        if vf > self.config.coordinate_samples:
            rows = torch.randperm(vf, device=centres.device)[: self.config.coordinate_samples] if self.training \
                else torch.linspace(0, vf - 1, self.config.coordinate_samples, device=centres.device).long()
        descriptor = field.decoded["descriptor"][vc + rows]
        return {"coordinate_prediction": self.heads.coordinates(descriptor), "coordinate_target": centres[rows],
                "coordinate_batch": batch[rows]}

    # -- 3D queries ---------------------------------------------------------------------------------------------
    def _query(self, field: SparseVoxelField, points: Tensor, name: str) -> Tensor:
        b, m, _ = points.shape
        batch = torch.arange(b, device=points.device).repeat_interleave(m)
        values, _ = self.heads.query(field, batch, points.reshape(-1, 3).to(field.coarse.features.dtype), (name,))
        return values[name].reshape(b, m, *values[name].shape[1:])

    def query_density(self, field: SparseVoxelField, points: Tensor) -> Tensor:
        """Density sigma [B, M] (>= 0, per metre) at ego points [B, M, 3]."""
        return self._query(field, points, "density")

    def query_features(self, field: SparseVoxelField, points: Tensor) -> Tensor:
        """3D descriptors [B, M, F] at ego points (the foundation head, or its hidden layer for 'internal')."""
        if not self.config.feature_head:
            raise RuntimeError("this model has no feature head (config.feature_head is false)")
        return self._query(field, points, "descriptor")

    def regress_coordinates(self, features: Tensor) -> Tensor:
        """Contracted xyz predicted from descriptors (FeatureNeRF coordinate head)."""
        if self.heads.coordinates is None:
            raise RuntimeError("this model has no coordinate head (config.coordinate_head is false)")
        return self.heads.coordinates(features)

    def parameter_counts(self) -> dict[str, int]:
        groups = {"encoder": self.encoder, "depth": self.depth, "voxel_conv": self.voxel_conv,
                  "field_heads": self.heads, "decoder": self.decoder}
        counts = {name: sum(p.numel() for p in module.parameters()) for name, module in groups.items()}
        counts["total"] = sum(p.numel() for p in self.parameters())
        counts["trainable"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return counts
