"""The compiled CPU kernels of the model library (``distillnerf._cpu_kernels``, sources in ``csrc/``, built with
the package by ``pip install --no-build-isolation -e model``; ``make setup`` runs it): the submanifold sparse
convolution (:mod:`distillnerf.submanifold`) and the inference ray march (:mod:`distillnerf.renderer`). Where the
extension is not built, both fall back to their torch/spconv paths with one warning."""

from __future__ import annotations

import logging

import torch  # noqa: F401  (loads libtorch, which the extension links against)

log = logging.getLogger(__name__)

try:
    from distillnerf import _cpu_kernels as _module
    ERROR: str | None = None
except ImportError as error:  # a source tree whose extension was not built
    _module = None
    ERROR = f"distillnerf._cpu_kernels is not built ({error}); reinstall with " \
            "`pip install --no-build-isolation -e model`"

_warned = False


def available() -> bool:
    """Whether the kernels are built; warns once (naming the slower fallback) when they are not."""
    global _warned
    if _module is None and not _warned:
        log.warning("%s: the CPU falls back to spconv's convolution and the torch ray march (slower)", ERROR)
        _warned = True
    return _module is not None


def kernels():
    """The compiled module; a clear error where it is not built."""
    if _module is None:
        raise RuntimeError(ERROR)
    return _module
