"""The training loop: single process or ``torchrun`` DDP, AMP on CUDA, atomic checkpoints with exact resume.

Exact resume rests on two rules: every random draw comes from RNG states saved in the checkpoint (python, numpy,
torch, CUDA), and the data order is a pure function of (seed, step), so a resumed run sees the batches the
uninterrupted run would have seen.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Sampler
from torch.utils.data._utils.collate import default_collate

from distillnerf.checkpoint import atomic_torch_save, load_checkpoint
from distillnerf.config import ModelConfig, config_from_dict, load_model_config
from distillnerf.model import DistillNeRF
from distillnerf.perception import resolve_device

from .config import TrainConfig
from .data import NuScenesKeyframes
from .losses import DistillNeRFLoss, sample_distillation_points
from .rendering import render_views

TRAIN_STATE_VERSION = 1


# -- distributed ---------------------------------------------------------------------------------------------------
def distributed_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) for a plain process."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def pick_device(name: str, local_rank: int) -> torch.device:
    """The library's device rule ('auto', 'cuda' without CUDA is an error), on this process's GPU under torchrun."""
    device = resolve_device(name)
    return torch.device("cuda", local_rank) if device.type == "cuda" else device


# -- data order ----------------------------------------------------------------------------------------------------
class StepBatchSampler(Sampler):
    """Batches of indices for steps ``start..stop``: a fresh permutation per epoch seeded by (seed, epoch), the
    global position ``(step * world + rank) * batch + j`` so ranks never share a sample within a step."""

    def __init__(self, length: int, batch_size: int, seed: int, start: int, stop: int, rank: int = 0,
                 world: int = 1) -> None:
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.start, self.stop, self.rank, self.world = start, stop, rank, world
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(self.length, generator=torch.Generator().manual_seed(
                self.seed * 100003 + epoch))}
        return self._perms[epoch]

    def indices(self, step: int) -> list[int]:
        first = (step * self.world + self.rank) * self.batch_size
        return [int(self._perm(q // self.length)[q % self.length]) for q in range(first, first + self.batch_size)]

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield self.indices(step)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def collate(items: list[dict]) -> dict:
    return default_collate(items)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# -- RNG and checkpoints -------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_train_state(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"no training checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises several types for a truncated or foreign file
        raise ValueError(f"{path}: corrupt training checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(state, dict) or state.get("format") != "distillnerf-train-state":
        raise ValueError(f"{path}: not a distillnerf training checkpoint")
    if state.get("version") != TRAIN_STATE_VERSION:
        raise ValueError(f"{path}: training checkpoint version {state.get('version')}, expected {TRAIN_STATE_VERSION}")
    return state


def features_dir(config: TrainConfig) -> Path:
    """Where the feature targets and their reducer.pt live (``data.features_dir``, default DATAROOT/features)."""
    return Path(config.data.features_dir or Path(config.data.dataroot) / "features")


def class_prototypes(folder: Path) -> torch.Tensor:
    """The class prototypes (reduced class-prompt text embeddings) that ``distillnerf features`` stores beside its
    targets in ``reducer.pt`` in ``folder``."""
    path = Path(folder) / "reducer.pt"
    if not path.is_file():
        raise FileNotFoundError(f"losses.feature_contrast needs {path} (run distillnerf features)")
    meta = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(meta, dict) or "class_targets" not in meta:
        raise ValueError(f"{path} has no 'class_targets': re-run distillnerf features to write them")
    return torch.as_tensor(meta["class_targets"], dtype=torch.float32)


# -- schedule ------------------------------------------------------------------------------------------------------
def lr_multiplier(config: TrainConfig):
    s, total = config.schedule, config.train.max_steps

    def multiplier(step: int) -> float:
        if s.warmup_steps > 0 and step < s.warmup_steps:
            return (step + 1) / s.warmup_steps
        if s.kind == "cosine":
            progress = min(1.0, (step - s.warmup_steps) / max(1, total - s.warmup_steps))
            return s.min_ratio + (1 - s.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if s.kind == "step":
            return s.gamma ** ((step - s.warmup_steps) // s.step_size)
        return 1.0

    return multiplier


# -- one step as a module (so DDP sees every parameter use inside forward) -----------------------------------------
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
        if cfg.density_distill > 0:
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


# -- the trainer ---------------------------------------------------------------------------------------------------
class Trainer:
    def __init__(self, config: TrainConfig, out_dir: str | None = None, max_steps: int | None = None) -> None:
        if max_steps is not None:
            config = replace(config, train=replace(config.train, max_steps=max_steps))
        self.config = config
        self.out = Path(out_dir or config.train.out)
        self.rank, self.world, self.local_rank = distributed_env()
        if self.world > 1 and not dist.is_initialized():
            backend = "nccl" if config.train.device != "cpu" and torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend)
        self.device = pick_device(config.train.device, self.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.amp = config.train.amp and self.device.type == "cuda"
        self.model_config: ModelConfig = load_model_config(config.model)
        data_config = config.data
        self.dataset = NuScenesKeyframes(replace(data_config, input_size=self.model_config.input_size,
                                                 render_size=self.model_config.render_size,
                                                 feature_dim=self.model_config.feature_dim))
        seed_everything(config.train.seed)  # identical initial weights on every rank
        self.model = DistillNeRF(self.model_config).to(self.device)
        if config.train.init_from:
            self.init_weights(Path(config.train.init_from))
        prototypes = class_prototypes(features_dir(config)) \
            if config.losses.feature_contrast > 0 or config.losses.voxel_contrast > 0 else None
        self.step_module = TrainStep(self.model, DistillNeRFLoss(config.losses, prototypes),
                                     config.train.render_virtual_views).to(self.device)
        self.ddp = None
        if self.world > 1:
            self.ddp = nn.parallel.DistributedDataParallel(
                self.step_module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        self.optimizer = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad],
                                          lr=config.optim.lr, betas=tuple(config.optim.betas),
                                          weight_decay=config.optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_multiplier(config))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.step = 0
        self.writer = None
        # Per-rank RNG streams differ (camera dropout, jitter), yet are reproducible.
        seed_everything(config.train.seed * 1000 + self.rank)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def state_path(self) -> Path:
        return self.out / "checkpoints" / "last.pt"

    @property
    def model_path(self) -> Path:
        return self.out / "model.pt"

    # -- checkpoints ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": "distillnerf-train-state", "version": TRAIN_STATE_VERSION, "step": self.step,
            "model": self.model.state_dict(), "model_config": self.model_config.to_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rng_state(), "train_config": self.config.to_dict(),
            "world_size": self.world,
        }

    def save(self) -> None:
        """Every rank writes its RNG state, then rank 0 the resumable state and the inference checkpoint."""
        if self.world > 1:
            atomic_torch_save({"step": self.step, "rng": rng_state()}, self.rng_path(self.rank))
            dist.barrier()
        if self.is_main:
            atomic_torch_save(self.state_dict(), self.state_path)
            self.export(self.model_path)
        if self.world > 1:
            dist.barrier()

    def rng_path(self, rank: int) -> Path:
        return self.out / "checkpoints" / f"rng_rank{rank}.pt"

    def export(self, path: Path) -> None:
        from distillnerf.checkpoint import save_checkpoint

        save_checkpoint(path, self.model, self.model_config, self.export_extras())

    def export_extras(self) -> dict:
        extras = {"step": self.step, "train_config": self.config.to_dict(), "dataset": self.config.data.dataroot}
        reducer = features_dir(self.config) / "reducer.pt"
        if reducer.is_file():  # the features command's PCA: the node must reduce text embeddings the same way
            meta = torch.load(reducer, map_location="cpu", weights_only=True)
            if not isinstance(meta, dict) or "reducer" not in meta:
                raise ValueError(f"{reducer}: expected the features command's dict with a 'reducer' entry")
            extras.update({k: meta[k] for k in ("reducer", "text_encoder", "dino_reducer", "dino_model") if k in meta})
        return extras

    def init_weights(self, path: Path) -> None:
        """Weights of an inference checkpoint (``model.pt``) trained with the same model config; the optimiser and
        schedule start afresh at step 0 (``resume`` instead continues a run exactly)."""
        model, saved, _ = load_checkpoint(path)
        changed = self.model_config.weights_layout_differences(saved)
        if changed:
            raise ValueError(f"train.init_from {path}: trained with model config {saved.name!r}, which differs "
                             f"from this run's {self.model_config.name!r} in {changed}")
        self.model.load_state_dict(model.state_dict())

    def resume(self, path: Path | None = None) -> None:
        state = load_train_state(path or self.state_path)
        saved = config_from_dict(state["model_config"])
        if saved != self.model_config:
            raise ValueError(f"checkpoint {path or self.state_path} was trained with model config {saved.name!r} "
                             f"that differs from this run's {self.model_config.name!r}")
        if state.get("world_size", 1) != self.world:
            raise ValueError(f"checkpoint was written by {state.get('world_size')} processes, this run has "
                             f"{self.world}: the data order would differ")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        if self.world == 1:
            set_rng_state(state["rng"])
        else:
            rank_state = torch.load(self.rng_path(self.rank), map_location="cpu", weights_only=False) \
                if self.rng_path(self.rank).is_file() else None
            if rank_state is None or rank_state["step"] != self.step:
                raise ValueError(f"{self.rng_path(self.rank)}: missing or from another step than {self.step}")
            set_rng_state(rank_state["rng"])

    # -- logging ----------------------------------------------------------------------------------------------
    def _log(self, terms: dict, total: float, batch: dict, out: dict) -> None:
        cfg = self.config.train
        if not self.is_main:
            return
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out / "tensorboard"))
        if self.step % cfg.log_every == 0:
            self.writer.add_scalar("loss/total", total, self.step)
            for name, value in terms.items():
                self.writer.add_scalar(f"loss/{name}", value, self.step)
            self.writer.add_scalar("lr", self.optimizer.param_groups[0]["lr"], self.step)
        if cfg.image_every and self.step % cfg.image_every == 0:
            self.writer.add_image("rgb/prediction_vs_target", image_grid(out["rgb"][0], batch["images"][0]), self.step)
            self.writer.add_image("depth/prediction", depth_grid(out["depth"][0]), self.step)

    # -- the loop ---------------------------------------------------------------------------------------------
    def train(self) -> dict:
        from tqdm import tqdm

        cfg = self.config.train
        sampler = StepBatchSampler(len(self.dataset), cfg.batch_size, cfg.seed, self.step, cfg.max_steps,
                                   self.rank, self.world)
        # Its own generator: a DataLoader iterator otherwise draws a seed from the global RNG, which would shift
        # the model's random stream between a fresh and a resumed run.
        loader = DataLoader(self.dataset, batch_sampler=sampler, num_workers=cfg.num_workers, collate_fn=collate,
                            pin_memory=self.device.type == "cuda",
                            generator=torch.Generator().manual_seed(cfg.seed + self.step))
        module = self.ddp or self.step_module
        module.train()
        progress = tqdm(total=cfg.max_steps, initial=self.step, disable=not self.is_main, desc="train",
                        dynamic_ncols=True, file=sys.stderr)
        started, last_terms, total_value = time.perf_counter(), {}, math.nan
        for batch in loader:
            batch = to_device(batch, self.device)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                total, terms, out = module(batch)
            if not torch.isfinite(total):
                raise FloatingPointError(f"step {self.step}: loss is {float(total)} ({terms})")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            total_value, last_terms = float(total.detach()), terms
            self._log({**terms, "grad_norm": float(grad_norm)}, total_value, batch, out)
            self.step += 1
            progress.update(1)
            progress.set_postfix(loss=f"{total_value:.4f}")
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < cfg.max_steps:
                self.save()
        progress.close()
        self.save()
        if self.writer is not None:
            self.writer.close()
        return {"step": self.step, "loss": total_value, "terms": last_terms,
                "seconds": time.perf_counter() - started, "checkpoint": str(self.model_path)}

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def image_grid(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[3, H', W'] grid: predicted cameras on the first row, targets on the second."""
    from torchvision.utils import make_grid

    return make_grid(torch.cat([pred, target]).detach().float().clamp(0, 1).cpu(), nrow=pred.shape[0])


def depth_grid(depth: torch.Tensor, far: float = 80.0) -> torch.Tensor:
    """Inverse-depth visualisation of [N, h, w] depth maps (near = bright)."""
    from torchvision.utils import make_grid

    inv = (1.0 / depth.detach().float().clamp(1.0, far)).cpu()
    inv = (inv - 1.0 / far) / (1.0 - 1.0 / far)
    return make_grid(inv[:, None].expand(-1, 3, -1, -1), nrow=depth.shape[0])
