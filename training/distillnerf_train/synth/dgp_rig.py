"""Make a rig file from a DGP (DDAD) scene's calibration JSON: ``python -m distillnerf_train.synth.dgp_rig``.

Run by hand once to write ``model/distillnerf/configs/rigs/ddad.yaml``; the data itself is never copied. DGP
extrinsics are sensor to vehicle poses with optical camera frames (x right, y down, z forward), the same convention
as nuScenes and the rig.
Cameras are ordered like the nuScenes rig (front-left, front, front-right, back-right, back, back-left) by the
direction they look.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from distillnerf.rig import CameraCalibration, Rig, quaternion_to_matrix, save_rig


def rig_from_dgp(scene_dir: Path, width: int, height: int, name: str = "ddad") -> Rig:
    calibration = sorted((scene_dir / "calibration").glob("*.json"))[0]
    data = json.loads(calibration.read_text())
    cameras = []
    for sensor, extrinsic, intrinsic in zip(data["names"], data["extrinsics"], data["intrinsics"]):
        if not sensor.startswith("CAMERA"):
            continue
        q = extrinsic["rotation"]
        t = extrinsic["translation"]
        K = np.array([[intrinsic["fx"], intrinsic.get("skew", 0.0), intrinsic["cx"]],
                      [0.0, intrinsic["fy"], intrinsic["cy"]],
                      [0.0, 0.0, 1.0]])
        cameras.append(CameraCalibration(sensor, width, height, K, np.array([t["x"], t["y"], t["z"]]),
                                         np.array([q["qw"], q["qx"], q["qy"], q["qz"]])))

    def heading(cam: CameraCalibration) -> float:  # clockwise from front-left (+45 deg) round to back-left
        forward = quaternion_to_matrix(cam.rotation_wxyz)[:, 2]
        return (np.pi / 4 - np.arctan2(forward[1], forward[0]) + 0.3) % (2 * np.pi)

    cameras.sort(key=heading)
    source = (f"DGP calibration {calibration.name} of {scene_dir.name} in DDAD-mini (dgp unit-test scenes, "
              f"{scene_dir.parent.name}); images {width}x{height}; written by distillnerf_train.synth.dgp_rig. The "
              f"LiDAR extrinsic there is the identity (no usable roof mount), so no lidar entry: the synthetic world "
              f"mounts its default LiDAR.")
    return Rig(name, tuple(cameras), None, "base_link", source)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene_dir", type=Path, help="a DGP scene folder with calibration/*.json")
    parser.add_argument("out", type=Path, help="rig file to write, e.g. model/distillnerf/configs/rigs/ddad.yaml")
    parser.add_argument("--size", default="1936x1216", help="image size of the cameras (DDAD: 1936x1216)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    print(save_rig(rig_from_dgp(args.scene_dir, width, height), args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
