"""The run explorer: one self-contained HTML file that shows a run's trajectory.

    mlpsim explore --run RUN_DIR --out explorer.html

The page (``explorer.js``, ``explorer.css``, inlined) embeds the run's data and
computes in the browser what it shows from the stored weights: the network
drawn with edges coloured and sized by weight (or by change since
initialization), every hidden neuron's response and the output against the
training data (1-D inputs), the weight histogram on the notebook's bins, the
loss curve with a cursor, the singular values of each matrix. A checkpoint
slider with play/pause and speed, an instance selector, the config and the
verdicts at the side. The state lives in the URL fragment
(``#instance=2&checkpoint=last``, instance 0-based, checkpoint the run's own
index or ``last``), and the current step and loss are plain text in the
elements ``#step`` and ``#loss`` (full precision in ``data-value``).

Size: the first and last checkpoints are embedded exactly (float64); the ones
between, as float16, thinned evenly to fit ``max_mb`` (the page says how many
it shows). The losses of every checkpoint are embedded exactly.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from ..analysis import pick_checkpoints, singular_values
from ..config import ConfigError
from ..store import Run, RunError, atomic_write_bytes, check_output_file, load_run, to_jsonable

HERE = Path(__file__).resolve().parent
MAX_EDGES = 2000
MAX_POINTS = 2000


def b64(array, dtype) -> str:
    """Little-endian bytes of ``array`` as ``dtype``, base64-encoded (beyond the dtype's range: inf)."""
    with np.errstate(over="ignore"):
        data = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
    return base64.b64encode(data.tobytes()).decode()


def explorer_data(run: Run, max_mb: float = 4.0, verdicts: bool = True) -> dict:
    """Everything the page shows, as JSON-ready data (arrays base64-encoded)."""
    net = run.net
    E, C, P = run.params.shape
    if C == 0:
        raise RunError(f"run {str(run.path)!r} has no checkpoint written yet; nothing to show")
    budget = max_mb * 1e6 * 0.7  # leave room for base64 (4/3) and the page itself
    per_checkpoint = E * P * 2
    n_emb = int(max(2, min(C, (budget - E * 2 * P * 8 - E * C * 8) // max(per_checkpoint, 1))))
    emb = pick_checkpoints(C, n_emb)
    params = np.asarray(run.params[:, emb], dtype=np.float64)            # (E, C', P)
    big = np.abs(params) > 60000.0
    exact = np.asarray(run.params[:, [0, C - 1]], dtype=np.float64)     # (E, 2, P)
    x, y = run.data()
    keep = np.arange(x.shape[0])
    if x.shape[0] > MAX_POINTS:
        keep = np.sort(np.random.default_rng(0).choice(x.shape[0], MAX_POINTS, replace=False))
    sv = {}
    bad = ~np.all(np.isfinite(params), axis=-1)  # a diverged instance's frozen rows are NaN
    for l, e in enumerate(l for l in net.layout if l.kind == "weight"):
        s = singular_values(np.where(bad[..., None], 0.0, params), net, l + 1, workers=1)
        s[bad] = np.nan
        sv[e.name] = {"k": min(e.shape), "values": b64(s, "f4")}
    cfg = run.config
    meta = {
        "run": str(Path(run.path).resolve()), "status": run.manifest["status"],
        "reason": run.manifest.get("reason") or "", "written": C, "total": run.manifest["checkpoints_total"],
        "widths": list(net.widths), "activation": net.activation, "leaky_slope": net.leaky_slope,
        "n_params": P, "instances": E, "dtype": cfg.train.dtype, "mesh_k": cfg.model.mesh_k,
        "layout": [{"name": e.name, "layer": e.layer, "kind": e.kind, "offset": e.offset, "shape": list(e.shape)}
                   for e in net.layout],
        "x_range": list(cfg.data.x_range), "target": cfg.data.target,
        "clipped_values": int(big.sum()),
    }
    data = {
        "meta": meta, "config": cfg.to_dict(),
        "embedded": [int(c) for c in emb], "steps": b64(np.asarray(run.steps), "i4"),
        "loss": b64(run.loss, "f8"),
        "params": b64(np.clip(params, -60000, 60000), "f2"), "exact": b64(exact, "f8"),
        "free": b64(net.free, "u1"),
        "x": b64(x[keep], "f8"), "y": b64(y[keep], "f8"), "n_points": int(keep.size),
        "n_points_total": int(x.shape[0]), "singular": sv, "verdicts": [],
    }
    if verdicts and run.manifest["status"] == "complete":
        data["verdicts"] = _verdicts(run)
    return data


def _verdicts(run) -> list:
    """The per-matrix claims on this run (cheap ones), as short records; none below their minimum."""
    from .. import claims
    out = []
    for name in ("broadening", "longer_tails", "rank_decrease"):
        try:
            v = claims.evaluate(name, run)
        except Exception as exc:  # noqa: BLE001 - a claim that cannot be judged here is said so
            out.append({"claim": name, "status": "not judged", "reason": str(exc)[:300]})
            continue
        out.append({"claim": v.claim, "status": v.status, "headline": v.headline(), "reason": v.reason[:600]})
    return out


def render(data: dict, title: str) -> str:
    """The HTML page: the template with the code and the data inlined."""
    page = (HERE / "explorer.html").read_text()
    blob = json.dumps(to_jsonable(data), separators=(",", ":")).replace("</", "<\\/")
    return (page.replace("{{TITLE}}", html.escape(title))
            .replace("{{CSS}}", (HERE / "explorer.css").read_text())
            .replace("{{JS}}", (HERE / "explorer.js").read_text())
            .replace("{{DATA}}", blob))


def build_explorer(run, out, max_mb: float = 4.0, verdicts: bool = True) -> dict:
    """Write the explorer of ``run`` (a path or a Run) to ``out``; return its path, size and what it holds.

    A run still being written shows the checkpoints written so far, and a failed
    run its checkpoints and the failure reason (the page says so). A folder that
    is not a run is a RunError.
    """
    if not (isinstance(max_mb, (int, float)) and max_mb >= 0.5):  # (nan fails this too)
        raise ConfigError(f"--max-mb must be a number >= 0.5, got {max_mb!r}")
    out = check_output_file(out, "--out")
    if not isinstance(run, Run):
        run = load_run(run, allow_incomplete=True)
    data = explorer_data(run, max_mb, verdicts)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render(data, f"mlpsim explorer: {Path(run.path).name}")
    atomic_write_bytes(out, text.encode())
    return {"path": out, "bytes": out.stat().st_size, "embedded": len(data["embedded"]),
            "checkpoints": data["meta"]["written"], "status": data["meta"]["status"]}
