"""The demo report: ``metrics.json``, the PNG figures of one showcase frame and ``index.html``."""

from __future__ import annotations

import html
import json
from pathlib import Path

from .figures import figure_bird_eye, figure_depth, figure_inputs, figure_query, figure_semantic_3d
from .results import FrameResult, clean_for_json, compute_metrics, headline


def _format(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def write_report(out: str | Path, frames: list[FrameResult], info: dict, query_text: str = "",
                 showcase: int = -1) -> dict:
    """Write ``metrics.json``, the PNGs of one showcase frame and ``index.html`` into ``out``; return metrics.

    ``info`` describes the run (data source, weights, seed, ...); a ``weights`` entry starting with "random"
    labels every page as random weights so such figures cannot pass for a trained model's.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = compute_metrics(frames)
    document = {"info": info, "query": query_text or None, "metrics": metrics, "headline": headline(metrics)}
    text = json.dumps(clean_for_json(document), indent=2, sort_keys=True, allow_nan=False)
    (out / "metrics.json").write_text(text + "\n", encoding="utf-8")
    figures: list[tuple[str, Path]] = []
    if frames:
        frame = frames[showcase]
        if frame.inputs:
            figures.append(("Inputs", figure_inputs(frame, out / "inputs.png")))
        if frame.depth:
            figures.append(("Depth: predicted and true", figure_depth(frame, out / "depth.png")))
        if frame.occupancy_grid is not None:
            figures.append(("Bird's-eye occupancy", figure_bird_eye(frame, out / "occupancy_bev.png")))
        if frame.semantics is not None:
            figures.append(("Semantic occupancy (3D)", figure_semantic_3d(frame, out / "semantic_occupancy.png")))
        query = figure_query(frame, out / "query.png", query_text) if query_text else None
        if query is not None:
            figures.append((f"Query \"{query_text}\"", query))
    random = str(info.get("weights", "")).lower().startswith("random")
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_format(v)}</td></tr>" for k, v in info.items())
    score_rows = []
    if metrics["depth"]:
        for key in ("abs_rel", "sq_rel", "rmse", "rmse_log", "d1", "d2", "d3"):
            score_rows.append((f"depth {key}", metrics["depth"].get(key)))
    if metrics.get("depth_lidar"):
        for key in ("abs_rel", "sq_rel", "rmse", "rmse_log", "d1", "d2", "d3"):
            score_rows.append((f"depth vs LiDAR {key}", metrics["depth_lidar"].get(key)))
    if metrics["occupancy"]:
        score_rows += [("occupancy mIoU (%)", metrics["occupancy"]["miou"]),
                       ("occupancy geometric IoU (%)", metrics["occupancy"]["geometric_iou"])]
    for key in ("end_to_end_latency_ms", "node_processing_ms"):
        if metrics[key]:
            score_rows.append((f"{key} median / max", f"{metrics[key]['median']:.1f} / {metrics[key]['max']:.1f}"))
    scores = "".join(f"<tr><th>{html.escape(k)}</th><td>{_format(v)}</td></tr>" for k, v in score_rows) or (
        "<tr><td>no scores: this data has neither exact ground truth nor LiDAR</td></tr>")
    banner = ("<p class='warn'>RANDOM WEIGHTS: these outputs come from an untrained model and only show that the "
              "pipeline works.</p>" if random else "")
    images = "".join(f"<h2>{html.escape(title)}</h2><img src='{p.name}' alt='{html.escape(title)}'>"
                     for title, p in figures)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>DistillNeRF demo</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}} img{{max-width:100%}}
table{{border-collapse:collapse}} th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left}}
.warn{{background:#fdd;border:2px solid #c00;padding:8px;font-weight:bold}}</style></head>
<body><h1>DistillNeRF ROS 2 demo{' (random weights)' if random else ''}</h1>{banner}
<p>{html.escape(document['headline'])}</p>
<h2>Scores ({metrics['frames']} frames)</h2><table>{scores}</table>
<h2>Run</h2><table>{rows}</table>
{images}
<p>All numbers: <a href="metrics.json">metrics.json</a>.</p></body></html>
"""
    (out / "index.html").write_text(page, encoding="utf-8")
    return document
