"""Per-stage timing without synchronising the hot path: CUDA events on GPU (read once, at the end), the wall
clock on CPU. The model takes a timer optionally; ``NullTimer`` (the default) costs nothing."""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch


class NullTimer:
    @contextmanager
    def stage(self, name: str):
        yield


class StageTimer:
    """``with timer.stage('encode'): ...``; ``timer.result()`` -> {stage: ms, 'total': ms} (synchronises once)."""

    def __init__(self, device: torch.device | str):
        self.cuda = torch.device(device).type == "cuda"
        self._marks: list[tuple[str, object, object]] = []

    def _now(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    @contextmanager
    def stage(self, name: str):
        start = self._now()
        try:
            yield
        finally:
            self._marks.append((name, start, self._now()))

    def result(self) -> dict[str, float]:
        if self.cuda and self._marks:
            self._marks[-1][2].synchronize()
        out: dict[str, float] = {}
        for name, start, end in self._marks:
            ms = start.elapsed_time(end) if self.cuda else (end - start) * 1000.0
            out[name] = out.get(name, 0.0) + ms
        if self._marks:
            first, last = self._marks[0][1], self._marks[-1][2]
            out["total"] = first.elapsed_time(last) if self.cuda else (last - first) * 1000.0
        return out
