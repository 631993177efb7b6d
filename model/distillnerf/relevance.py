"""Open-vocabulary relevance and semantic labels from 3D (or rendered) features, in the distilled feature space.

The feature head regresses reduced text/image embeddings (PCA + min-max, see :class:`distillnerf.foundation.
FeatureReducer`), so a feature is compared with a text by their distance in that space, not by the cosine of two
all-positive vectors (which is high for everything). A query's *relevance* (as in the paper and LERF) is the
softmax probability of the query against a vocabulary of alternatives: high only where the query fits better
than every alternative. Texts that equal the query are left out of its alternatives.
"""

from __future__ import annotations

import torch
from torch import Tensor


def scores(features: Tensor, embeddings: Tensor) -> Tensor:
    """Negative squared distance [M, K] between features [M, F] and embeddings [K, F] (higher = closer)."""
    return -torch.cdist(features.float(), embeddings.float()).square()


def nearest_class(features: Tensor, prototypes: Tensor, offsets: Tensor | None = None) -> Tensor:
    """Index [M] of the nearest class prototype of each feature; ``offsets`` [K], when given, are added to each
    class's score first (a calibrated class prior)."""
    s = scores(features, prototypes)
    return (s if offsets is None else s + offsets.to(s)).argmax(dim=-1)


def relevance(features: Tensor, query: Tensor, alternatives: Tensor, temperature: float) -> Tensor:
    """Softmax probability [M] in [0, 1] of ``query`` [F] against ``alternatives`` [K, F] for each feature."""
    if temperature <= 0:
        raise ValueError(f"relevance temperature must be positive, got {temperature}")
    logits = scores(features, torch.cat([query[None], alternatives])) / temperature
    return torch.softmax(logits, dim=-1)[:, 0]
