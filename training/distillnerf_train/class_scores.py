"""Per-class scores of an evaluation: the 2D accuracy of rendered features and the average precision of voxel
relevance for each class prompt (:class:`SemanticScores`), and the depth error per class (:class:`ClassDepthErrors`),
each pixel's or voxel's truth taken from the feature targets' stored prototypes or the Occ3D labels."""

from __future__ import annotations

import numpy as np
import torch

from distillnerf.metrics import average_precision
from distillnerf.occupancy import FREE_LABEL, OCC3D_CLASSES, occupancy_and_surface
from distillnerf.perception import Perception
from distillnerf.relevance import nearest_class, relevance

from .data.files import read_reducer_file


CLASS_NAMES = [name.replace("_", " ") for name in OCC3D_CLASSES[:FREE_LABEL]]


class SemanticScores:
    """2D semantic accuracy of rendered features and the per-class average precision of voxel relevance.

    2D: each pixel's class is the prototype (class prompt, or sky) nearest its feature target, among the prototypes
    stored beside the targets (``target_prototypes``, in the targets' own reduced space: the exact label for targets
    made from labels; the checkpoint's when none are given); the prediction is the checkpoint's prototype nearest
    the rendered feature. A reducer refitted for the evaluation data then cannot move the truth. 3D: at camera-visible
    voxels that the ground truth marks occupied, the relevance of each class prompt (against the others and the
    background words, as the node's query computes it) ranks the voxels; AP against membership of that class."""

    def __init__(self, perception: Perception, target_prototypes: torch.Tensor | None = None,
                 temperature_sweep: tuple[float, ...] = ()) -> None:
        self.perception = perception
        self.prototypes = perception._text_embeddings(CLASS_NAMES + ["sky"])
        self.target_prototypes = self.prototypes if target_prototypes is None else \
            target_prototypes.to(self.prototypes.device, self.prototypes.dtype)
        words, self.temperature = perception.relevance_settings()
        if any(t <= 0 for t in temperature_sweep):
            raise ValueError(f"relevance temperatures must be positive, got {temperature_sweep}")
        # the configured temperature first: its AP is the report's; the sweep's only calibrate it
        self.temperatures = list(dict.fromkeys((self.temperature, *temperature_sweep)))
        self.alternatives = [perception._text_embeddings([w for w in words if w != name]) for name in CLASS_NAMES]
        self.correct = np.zeros(len(CLASS_NAMES) + 1)
        self.total = np.zeros(len(CLASS_NAMES) + 1)
        self.scores: dict[float, list[np.ndarray]] = {t: [] for t in self.temperatures}
        self.labels: list[np.ndarray] = []

    def update_2d(self, rendered: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> None:
        """rendered / target [N,F,h,w], valid [N]."""
        f = rendered[valid].permute(0, 2, 3, 1).reshape(-1, rendered.shape[1])
        t = target[valid].permute(0, 2, 3, 1).reshape(-1, target.shape[1]).to(f.dtype)
        if f.shape[0] == 0:
            return
        truth = nearest_class(t, self.target_prototypes).cpu().numpy()
        pred = nearest_class(f, self.prototypes).cpu().numpy()
        np.add.at(self.total, truth, 1)
        np.add.at(self.correct, truth[pred == truth], 1)

    def update_3d(self, model, field, gt: np.ndarray, mask: np.ndarray) -> None:
        keep = mask.astype(bool) & (gt != FREE_LABEL)
        if not keep.any():
            return
        # read where the deployed path reads: each voxel's highest sub-sample above the occupancy threshold
        config = self.perception.config
        _, surface = occupancy_and_surface(model, field, self.perception.grid, config.occupancy_subsamples,
                                           config.occupancy_threshold)
        features = model.query_features(field, surface[0][torch.from_numpy(keep)][None])[0]
        for temperature, scores in self.scores.items():
            per_class = [relevance(features, self.prototypes[c], self.alternatives[c], temperature)
                         for c in range(len(CLASS_NAMES))]
            scores.append(torch.stack(per_class, 1).cpu().numpy().astype(np.float32))
        self.labels.append(gt[keep].astype(np.int64))

    def compute(self) -> dict:
        present = self.total > 0
        result = {"accuracy_2d": float(self.correct.sum() / max(self.total.sum(), 1)),
                  "class_accuracy_2d": float((self.correct[present] / self.total[present]).mean())
                  if present.any() else None}
        if self.labels:
            labels = np.concatenate(self.labels)
            by_temperature = {}
            for temperature, scores in self.scores.items():
                scores = np.concatenate(scores)
                per_class = {name: average_precision(scores[:, c], labels == c) for c, name in enumerate(CLASS_NAMES)}
                known = [v for v in per_class.values() if not np.isnan(v)]
                by_temperature[temperature] = (per_class, float(np.mean(known)) if known else None)
            per_class, mean_ap = by_temperature[self.temperature]
            result.update(per_class_ap={k: (None if np.isnan(v) else v) for k, v in per_class.items()},
                          map=mean_ap, voxels=int(labels.shape[0]), temperature=self.temperature)
            if len(self.temperatures) > 1:
                result["temperature_sweep"] = {str(t): by_temperature[t][1] for t in self.temperatures}
        return result


class ClassDepthErrors:
    """Depth AbsRel against the dense depth per class, pooled over pixels: each pixel's class is the prototype
    nearest its feature target (as for the 2D accuracy). Shows which things the depth fails on (near cars and
    people) when road and buildings fill most pixels and hold the image-averaged figure down."""

    def __init__(self, prototypes: torch.Tensor, names: list[str]) -> None:
        self.prototypes, self.names = prototypes, names
        self.error = np.zeros(len(names))
        self.pixels = np.zeros(len(names), dtype=np.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor, features: torch.Tensor, min_depth: float,
               max_depth: float) -> None:
        """pred / target [N,h,w] of the cameras to score, their feature targets [N,F,h,w]."""
        ok = (target > min_depth) & (target <= max_depth)
        if not bool(ok.any()):
            return
        t = features.permute(0, 2, 3, 1)[ok].float()
        classes = nearest_class(t, self.prototypes.to(t)).cpu().numpy()
        p = pred[ok].float().clamp(min_depth, max_depth)
        rel = ((p - target[ok]).abs() / target[ok]).double().cpu().numpy()
        np.add.at(self.error, classes, rel)
        np.add.at(self.pixels, classes, 1)

    def compute(self) -> dict:
        return {name: {"abs_rel": float(self.error[c] / self.pixels[c]), "pixels": int(self.pixels[c])}
                for c, name in enumerate(self.names) if self.pixels[c]}


def stored_prototypes(dataset) -> torch.Tensor | None:
    """The class prototypes ``distillnerf features`` stored beside a dataset's feature targets, in
    ``CLASS_NAMES + ["sky"]`` order, or None (no targets, or written before prototypes were stored)."""
    if not getattr(dataset, "has_features", False):  # the DGP rig has no feature targets
        return None
    path = dataset.features_dir / "reducer.pt"
    if not path.is_file():
        return None
    meta = read_reducer_file(path)
    if "class_targets" not in meta:
        return None
    if list(meta.get("class_names", [])) != CLASS_NAMES + ["sky"]:
        raise ValueError(f"{path}: its class prototypes are not the Occ3D class prompts and sky")
    return torch.as_tensor(meta["class_targets"], dtype=torch.float32)
