"""The model library stands alone: its wheel, installed by itself into a clean venv, runs bench and a real frame.

The clean venv sees the third-party packages of this environment (torch, spconv, ...) through a folder of links to
the main venv's site-packages that leaves out the project's own packages and their editable-install hooks, so
neither the source checkout nor the training or ROS package can leak in; the commands run outside the repository
with ``DISTILLNERF_CONFIG_PATH`` and ``PYTHONPATH`` unset.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = {"distillnerf", "distillnerf_train", "distillnerf_ros"}
PROJECT_DIST_INFO = re.compile(r"(distillnerf|distillnerf_train|distillnerf_ros)-[^-]+\.dist-info")


def build_wheel(out: Path) -> Path:
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    source = out / "model-source"
    shutil.copytree(REPO / "model", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    str(source), "-w", str(out / "wheels")], check=True, capture_output=True, timeout=600)
    (wheel,) = (out / "wheels").glob("distillnerf-*.whl")
    return wheel


def third_party_view(out: Path) -> Path:
    """A folder linking every entry of the main site-packages except the project's packages and editable hooks."""
    view = out / "third-party"
    view.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = entry.name
        if name in PROJECT_PACKAGES or name.startswith("__editable__") or PROJECT_DIST_INFO.fullmatch(name):
            continue
        (view / name).symlink_to(entry)
    return view


def clean_venv_python(out: Path, wheel: Path) -> Path:
    venv = out / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    # A plain path line: nested .pth files (the editable finders) are not processed from there.
    (Path(site) / "third_party.pth").write_text(f"{third_party_view(out)}\n")
    with zipfile.ZipFile(wheel) as archive:  # what pip does for a pure wheel without scripts
        archive.extractall(site)
    return python


@pytest.fixture(scope="module")
def clean_python(tmp_path_factory):
    out = tmp_path_factory.mktemp("model_wheel")
    wheel = build_wheel(out)
    python = clean_venv_python(out, wheel)

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {key: value for key, value in os.environ.items()
               if key not in ("DISTILLNERF_CONFIG_PATH", "PYTHONPATH", "VIRTUAL_ENV")}
        env.update(PYTHONNOUSERSITE="1", OMP_NUM_THREADS="1")
        return subprocess.run([str(python), *args], cwd=out, env=env, capture_output=True, text=True,
                              timeout=timeout)

    run.venv, run.wheel = python.parents[1], wheel
    return run


def test_wheel_installs_the_model_library_alone_with_its_configs(clean_python):
    shipped = {f"distillnerf/{path.relative_to(REPO / 'model' / 'distillnerf').as_posix()}"
               for path in (REPO / "model" / "distillnerf" / "configs").glob("*/*.yaml")}
    assert shipped and shipped <= set(zipfile.ZipFile(clean_python.wheel).namelist()), "configs missing from the wheel"
    probe = textwrap.dedent("""
        import importlib.util, json
        import distillnerf
        from distillnerf import cpu_kernels
        from distillnerf.config_files import resolve_config
        print(json.dumps({
            "file": distillnerf.__file__,
            "kernel": cpu_kernels.ERROR,
            "others": [name for name in ("distillnerf_train", "distillnerf_ros")
                       if importlib.util.find_spec(name) is not None],
            "cpu": str(resolve_config("cpu", "model")),
            "rig": str(resolve_config("nuscenes", "rigs")),
            "vocabulary": str(resolve_config("semantic_vocabulary", "foundation")),
        }))
    """)
    result = clean_python("-c", probe)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    venv = str(clean_python.venv)
    assert found["file"].startswith(venv), f"distillnerf imported from outside the clean venv: {found['file']}"
    assert found["others"] == [], f"the training or ROS package leaked into the clean venv: {found['others']}"
    assert found["kernel"] is None, f"the wheel's CPU kernels do not load: {found['kernel']}"
    for key in ("cpu", "rig", "vocabulary"):
        assert found[key].startswith(venv) and "/distillnerf/configs/" in found[key], found[key]


def test_bench_runs_from_the_wheel(clean_python):
    result = clean_python("-m", "distillnerf.cli", "bench", "--config", "tiny", "--device", "cpu", "--warmup", "0",
                          "--runs", "1", "--threads", "1")
    assert result.returncode == 0, result.stderr
    rows = dict(re.findall(r"^\s+(total|peak memory)\s+([\d.]+)", result.stdout, flags=re.MULTILINE))
    assert float(rows["total"]) > 0 and float(rows["peak memory"]) > 10, result.stdout
    assert "training step: unavailable (the training package is not installed)" in result.stdout


def test_perception_infers_a_real_frame_from_the_wheel(clean_python, nuscenes_tiny):
    snippet = textwrap.dedent(f"""
        import json
        from pathlib import Path
        import numpy as np
        import torch
        from PIL import Image
        import distillnerf
        from distillnerf.perception import Perception
        from distillnerf.rig import load_rig

        torch.set_num_threads(1)
        shipped = Path(distillnerf.__file__).parent / "checkpoints" / "cpu.pt"
        perception = Perception.from_checkpoint(shipped, device="cpu")
        perception.warmup()
        rig = load_rig("nuscenes")  # calibration of the log n015-2018-07-24-11-22-45
        images = []
        for name in perception.camera_names:
            first = sorted((Path({str(nuscenes_tiny)!r}) / "samples" / name).glob("n015-2018-07-24-11-22-45*.jpg"))[0]
            images.append(np.asarray(Image.open(first).convert("RGB")))
        cams = [rig.camera(name) for name in perception.camera_names]
        result = perception.infer(images, [c.intrinsics for c in cams], [c.cam_to_ego for c in cams])
        print(json.dumps({{"shape": list(result.depth.shape), "render": list(perception.render_size),
                          "finite": bool(np.isfinite(result.depth).all()), "positive": bool((result.depth > 0).all()),
                          "image": list(images[0].shape)}}))
    """)
    result = clean_python("-c", snippet)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    width, height = found["render"]
    assert found["image"] == [900, 1600, 3]
    assert found["shape"] == [6, height, width] and found["finite"] and found["positive"], found
