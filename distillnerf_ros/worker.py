"""The inference worker: one thread that takes the newest complete camera set and processes it.

Between the synchroniser (executor thread) and this thread is a queue of one (``LatestSlot``): a slow model
drops old sets instead of queueing them, and the executor never waits for the model. A failure in one set is
counted and warned about; it never ends the worker.
"""

from __future__ import annotations

import threading
from typing import Callable

from distillnerf_ros.conversions import InputError
from distillnerf_ros.synchronizer import LatestSlot


class InferenceWorker:
    """``process(frames)`` runs each set; ``wanted()`` says whether anybody listens (else the set is skipped);
    ``health`` counts outcomes; ``warn(key, text)`` is the node's throttled warning."""

    def __init__(self, process: Callable[[dict], None], wanted: Callable[[], bool], health,
                 warn: Callable[[object, str], None]):
        self._process = process
        self._wanted = wanted
        self._health = health
        self._warn = warn
        self.slot = LatestSlot()
        self._thread: threading.Thread | None = None
        self._running = False

    def put(self, frames: dict) -> None:
        """A complete set (synchroniser callback): hand over, never infer here."""
        self.slot.put(frames)

    def take(self, timeout: float | None = None) -> dict | None:
        """The newest waiting set, for a caller that drives ``process`` itself (tests, the benchmark) after
        ``stop``."""
        return self.slot.get(timeout)

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._run, name="distillnerf-inference", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (after the set in progress); sets arriving later wait in the slot for ``take``."""
        if self._thread is None:
            return
        self._running = False
        self.slot.close()
        self._thread.join(timeout)
        self._thread = None
        dropped = self.slot.dropped
        self.slot = LatestSlot()
        self.slot.dropped = dropped

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        slot = self.slot
        while self._running:
            frames = slot.get(timeout=0.2)
            if frames is None:
                continue
            if not self._wanted():
                self._health.skipped()
                continue
            self.run_one(frames)

    def run_one(self, frames: dict) -> None:
        try:
            self._process(frames)
        except InputError as error:
            camera = getattr(error, "camera", None)
            self._health.rejected_set(camera, error.kind, str(error))
            self._warn((camera, error.kind), f"dropped a camera set: {error}")
        except Exception as error:  # a model or publishing failure must not end the worker
            self._health.error(type(error).__name__, f"{type(error).__name__}: {error}")
            self._warn(("inference", type(error).__name__), f"inference failed: {type(error).__name__}: {error}")
