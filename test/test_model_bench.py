"""``distillnerf bench --json`` runs and reports every Table 7 row, memory and parameter counts."""

from __future__ import annotations

import json

from distillnerf.cli import main


def test_bench_json_runs_on_tiny(capsys):
    assert main(["bench", "--config", "tiny", "--device", "cpu", "--json", "--warmup", "0", "--runs", "2",
                 "--threads", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"] == "tiny" and result["device"] == "cpu" and result["cameras"] == 6
    table7 = ["single-view encoding", "multi-view fusion", "voxel convolution", "projection + ray march", "decoder"]
    assert list(result["rows"]) == table7 + ["model (Table 7 total)", "occupancy + semantics", "total"]
    assert all(ms > 0 for ms in result["rows"].values())
    # the total is the node's whole frame: the model's stages, then the Occ3D queries it publishes
    model = result["rows"]["model (Table 7 total)"]
    assert abs(model - sum(result["rows"][k] for k in table7)) <= 0.5 * model  # medians of sums vs sums of medians
    assert result["rows"]["total"] >= 0.99 * min(model + result["rows"]["occupancy + semantics"],
                                                 sum(result["rows"][k] for k in table7))
    assert result["peak_memory_mb"] > 10
    assert result["parameters"]["total"] == sum(v for k, v in result["parameters"].items()
                                                if k not in ("total", "trainable"))
    assert result["voxels"]["fine"] >= result["voxels"]["coarse"] > 0
    assert result["kernels"].startswith("compiled CPU kernels")  # make setup builds them; the figures depend on it


def test_bench_table_and_bad_device(capsys):
    assert main(["bench", "--config", "tiny", "--device", "cpu", "--warmup", "0", "--runs", "1",
                 "--threads", "1"]) == 0
    table = capsys.readouterr().out
    assert "projection + ray march" in table and "peak memory" in table and "kernels: compiled CPU kernels" in table
    assert main(["bench", "--config", "no-such-config", "--device", "cpu"]) == 1
    assert "no-such-config" in capsys.readouterr().err
