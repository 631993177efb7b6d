"""Foundation-feature targets (MaskCLIP-style CLIP, DINOv2) reduced to 64-d for feature distillation."""

from .extractors import DinoV2Extractor, MaskClipExtractor, interpolate_positional_embedding
from .pipeline import FeatureJob, camera_images, load_reducer_file, run_features

__all__ = ["DinoV2Extractor", "FeatureJob", "MaskClipExtractor", "camera_images", "interpolate_positional_embedding",
           "load_reducer_file", "run_features"]
