"""One training step as a module (so DDP sees every parameter use inside forward), and the loss targets it reads
beside the data (class prototypes of the feature targets)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from distillnerf.model import DistillNeRF

from .config import TrainConfig
from .data.files import read_reducer_file
from .losses import DistillNeRFLoss, sample_distillation_points
from .rendering import render_views


def features_dir(config: TrainConfig) -> Path:
    """Where the feature targets and their reducer.pt live (``data.features_dir``, default DATAROOT/features)."""
    return Path(config.data.features_dir or Path(config.data.dataroot) / "features")


def class_prototypes(folder: Path) -> torch.Tensor:
    """The class prototypes (reduced class-prompt text embeddings) that ``distillnerf features`` stores beside its
    targets in ``reducer.pt`` in ``folder``."""
    path = Path(folder) / "reducer.pt"
    if not path.is_file():
        raise FileNotFoundError(f"losses.feature_contrast needs {path} (run distillnerf features)")
    meta = read_reducer_file(path)
    if "class_targets" not in meta:
        raise ValueError(f"{path} has no 'class_targets': re-run distillnerf features to write them")
    return torch.as_tensor(meta["class_targets"], dtype=torch.float32)


class TrainStep(nn.Module):
    """Model forward, camera dropout, KDBTS teacher pass, virtual-view renders and the losses, in one forward."""

    def __init__(self, model: DistillNeRF, loss: DistillNeRFLoss, render_virtual: bool) -> None:
        super().__init__()
        self.model, self.loss, self.render_virtual = model, loss, render_virtual

    def _dropout(self, valid: torch.Tensor) -> torch.Tensor:
        cfg = self.loss.config
        student = valid.clone()
        for b in range(valid.shape[0]):
            if float(torch.rand(())) >= cfg.camera_dropout:
                continue
            present = valid[b].nonzero()[:, 0]
            most = min(cfg.camera_dropout_max, len(present) - 1)
            if most < 1:
                continue
            count = int(torch.randint(1, most + 1, ()))
            student[b, present[torch.randperm(len(present))[:count]]] = False
        return student

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict, dict]:
        cfg = self.loss.config
        valid = batch["camera_valid"]
        student_valid = self._dropout(valid) if self.training and cfg.camera_dropout > 0 else valid
        out = self.model(batch["images"], batch["intrinsics"], batch["cam_to_ego"], student_valid)
        extra: dict = {}
        # Distillation teaches what the dropped cameras saw; with none dropped the student is its own teacher (a
        # zero-gradient term), so the teacher pass is skipped.
        if cfg.density_distill > 0 and not torch.equal(student_valid, valid):
            with torch.no_grad():
                teacher = self.model(batch["images"], batch["intrinsics"], batch["cam_to_ego"], valid)
                points = sample_distillation_points(teacher["depth"], teacher["render_intrinsics"],
                                                    batch["cam_to_ego"], cfg.density_points)
                teacher_density = self.model.query_density(teacher["field"], points)
            extra["density"] = {"student": self.model.query_density(out["field"], points),
                                "teacher": teacher_density}
        if cfg.coordinate > 0 and "coordinate_prediction" in out:
            extra["coordinates"] = (out["coordinate_prediction"], out["coordinate_target"])
        if self.render_virtual and "virtual_valid" in batch and bool(batch["virtual_valid"].any()):
            extra["virtual"] = render_views(self.model, out, batch["intrinsics"], batch["virtual_cam_to_ego"])
        # Dropped cameras leave the 2D losses: their rays cross space no visible camera observed, which only the
        # 3D teacher (density distillation) can describe; depth targets there would teach hallucinated surfaces.
        with torch.autocast(batch["images"].device.type, enabled=False):  # losses in fp32 under AMP
            total, terms = self.loss(out, {**batch, "camera_valid": student_valid}, extra)
        return total, terms, out
