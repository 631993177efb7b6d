"""Arithmetic of the 2D image CNNs (``ModelConfig.cnn_precision``): bfloat16 autocast where the device computes it
natively. The CNNs' outputs return to float32 at their boundary, so depth rendering, lifting, the sparse field and
ray marching stay float32 whatever the setting."""

from __future__ import annotations

import contextlib
import functools

import torch


@functools.cache
def native_bfloat16(device_type: str) -> bool:
    """Whether this machine's ``device_type`` ('cpu', 'cuda') runs bfloat16 convolutions natively; elsewhere
    oneDNN emulates them, slower than float32."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        return torch.backends.mkldnn.is_available() and (torch.cpu._is_avx512_bf16_supported()
                                                         or torch.cpu._is_amx_tile_supported())
    return False


def precision_in_effect(precision: str, device: torch.device) -> str:
    """The precision the CNNs run in on ``device``: 'bfloat16' where asked for and native, else 'float32'."""
    return "bfloat16" if precision == "bfloat16" and native_bfloat16(device.type) else "float32"


def cnn_autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bfloat16 autocast when ``precision`` is in effect as 'bfloat16' on ``device``, else nothing (float32, or an
    enclosing autocast such as CUDA training's float16)."""
    if precision_in_effect(precision, device) == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
