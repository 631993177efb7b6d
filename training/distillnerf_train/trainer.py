"""The training loop: single process or ``torchrun`` DDP, AMP on CUDA, atomic checkpoints with exact resume.

Exact resume rests on two rules: every random draw comes from RNG states saved in the checkpoint (python, numpy,
torch, CUDA), and the data order is a pure function of (seed, step), so a resumed run sees the batches the
uninterrupted run would have seen.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from distillnerf.checkpoint import atomic_torch_save, check_config_changes, load_checkpoint, load_fitting_weights
from distillnerf.config import ModelConfig, config_from_dict, load_model_config
from distillnerf.model import DistillNeRF
from distillnerf.perception import resolve_device

from .config import TrainConfig
from .data import training_keyframes
from .data.files import read_reducer_file
from .losses import DistillNeRFLoss
from .reproducibility import (TRAIN_STATE_VERSION, StepBatchSampler, collate, load_train_state, lr_multiplier,
                              rng_state, seed_everything, set_rng_state, to_device)
from .train_step import TrainStep, class_prototypes, features_dir


# -- distributed ---------------------------------------------------------------------------------------------------
def distributed_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) for a plain process."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def pick_device(name: str, local_rank: int) -> torch.device:
    """The library's device rule ('auto', 'cuda' without CUDA is an error), on this process's GPU under torchrun."""
    device = resolve_device(name)
    return torch.device("cuda", local_rank) if device.type == "cuda" else device


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
        self.dataset = training_keyframes(replace(data_config, input_size=self.model_config.input_size,
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
            meta = read_reducer_file(reducer)
            if "reducer" not in meta:
                raise ValueError(f"{reducer}: expected the features command's dict with a 'reducer' entry")
            extras.update({k: meta[k] for k in ("reducer", "text_encoder", "dino_reducer", "dino_model") if k in meta})
        return extras

    def init_weights(self, path: Path) -> None:
        """Weights of an inference checkpoint (``model.pt``) trained with the same model config; the optimiser and
        schedule start afresh at step 0 (``resume`` instead continues a run exactly)."""
        model, saved, _ = load_checkpoint(path)
        check_config_changes(self.model_config, saved, self.config.train.init_changes, f"train.init_from {path}",
                             "train.init_changes")
        load_fitting_weights(self.model, model.state_dict(), f"train.init_from {path}")

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
