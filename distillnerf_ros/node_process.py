"""The node in its own process, as ``ros2 run`` starts it: its command line, its log, its ready line, a clean
stop. One helper for the demo, the end-to-end tests and anyone scripting the node."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from distillnerf_ros.interface import NODE_NAME, READY_PREFIX


def node_executable() -> list[str]:
    """The installed ``distillnerf_node`` console script beside this Python, else ``python -m``."""
    found = shutil.which("distillnerf_node", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                                   os.environ.get("PATH", "")]))
    return [found] if found else [sys.executable, "-m", "distillnerf_ros.node"]


def ros_arguments(parameters: dict, remaps: dict[str, str] | None = None) -> list[str]:
    """``--ros-args -p name:=value ... -r from:=to ...`` (booleans lower case, lists as YAML flow sequences)."""
    args = ["--ros-args"]
    for name, value in parameters.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            text = "[" + ",".join(str(v) for v in value) + "]"
        else:
            text = str(value)
        args += ["-p", f"{name}:={text}"]
    for source, target in (remaps or {}).items():
        args += ["-r", f"{source}:={target}"]
    return args


def bag_input_remaps(cameras) -> dict[str, str]:
    """The node's compressed-image inputs remapped to a nuScenes bag's ``/<CAM>/...`` topics."""
    remaps = {}
    for camera in cameras:
        remaps[f"/{NODE_NAME}/input/{camera}/image/compressed"] = f"/{camera}/image/compressed"
        remaps[f"/{NODE_NAME}/input/{camera}/camera_info"] = f"/{camera}/camera_info"
    return remaps


class NodeProcess:
    """``args`` follow the executable (e.g. ``ros_arguments(...)``); stdout and stderr are collected line by line."""

    def __init__(self, args: list[str], env: dict | None = None):
        self.command = node_executable() + list(args)
        self.env = env
        self.lines: list[str] = []
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> "NodeProcess":
        """Start and wait for the ready line; RuntimeError when it exits first, TimeoutError when too slow."""
        env = dict(os.environ if self.env is None else self.env)
        env.update(RCUTILS_LOGGING_USE_STDOUT="1", RCUTILS_LOGGING_BUFFERED_STREAM="0", PYTHONUNBUFFERED="1")
        env.setdefault("OMP_NUM_THREADS", "1")
        self.process = subprocess.Popen(self.command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, bufsize=1)
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if self.process.poll() is not None:
                self._reader.join(5.0)
                raise RuntimeError(f"the node exited with code {self.process.returncode} before it was ready:\n"
                                   f"{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the node was not ready after {timeout:.0f} s:\n{self.log_tail()}")
        return self

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if READY_PREFIX in line:
                self._ready.set()

    def log(self) -> str:
        return "\n".join(self.lines)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.lines[-lines:])

    def wait_for_log(self, text: str, timeout: float = 20.0, start: int = 0) -> str | None:
        """The first log line from index ``start`` containing ``text`` (None after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[start:]:
                if text in line:
                    return line
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        return None

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        raise RuntimeError("no VmRSS")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGINT, as ros2 launch does; SIGKILL after ``timeout``. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5.0)
        self._reader.join(5.0)
        return self.process.returncode
