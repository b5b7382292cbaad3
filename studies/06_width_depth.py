"""Study 06: how do the weight changes scale with width and depth?

Question (the seed notebook's investigation 3): MLPs of different widths and
depths. How do the variance ratio, the kurtosis change, the relative distance
from initialization and the effective-rank change scale with width (depth 3,
widths 4-64) and with depth (width 16, 1-8 hidden layers)? Does the relative
change shrink with width (the "lazy" regime of wide networks)?

Each network is one run (3 instances, the seed's data and optimizer, 2000
steps on 1000 points); metrics per instance come from
:func:`mlpsim.sweep.run_metrics`; exponents are log-log least-squares slopes
with 95 % bootstrap intervals (:func:`mlpsim.study.fit_power`).

``summary.json``: per width and depth the metrics, the exponents, and
``verdict`` / ``verdict_reason`` for "relative change shrinks with width":
``supported`` when the exponent of the relative distance in width is negative
with its whole interval below 0, ``contradicted`` when the interval is above 0,
else ``inconclusive``.

Runtime: a few minutes on 2 cores (``--scale`` multiplies steps; widths up to
512 are ``WIDTHS_LARGE``).
Run: ``mlpsim study width-depth --out out/width_depth``.
"""
import numpy as np

from mlpsim import plots
from mlpsim.config import preset
from mlpsim.study import fit_power, obtain_run, save_data, write_json
from mlpsim.sweep import run_metrics

NAME = "06_width_depth"
WIDTHS = (4, 8, 16, 32, 64)
DEPTHS = (1, 2, 3, 4, 6, 8)
METRICS = ("relative_distance", "variance_ratio", "kurtosis_change", "effective_rank_change", "final_loss")


def config(widths, steps):
    return preset("seed").with_overrides([f"model.widths={list(widths)}", "data.n=1000", f"train.steps={steps}",
                                          f"train.checkpoint_every={max(1, steps // 20)}", "train.instances=3"])


def run_all(out, progress=None, log=print, scale=1.0, widths=WIDTHS, depths=DEPTHS, steps=2000) -> dict:
    steps = max(20, int(round(steps * scale)))
    by_width = {w: obtain_run(config([1, w, w, w, 1], steps), out / "runs" / f"width_{w}", progress, log)
                for w in widths}
    by_depth = {d: obtain_run(config([1] + [16] * d + [1], steps), out / "runs" / f"depth_{d}", progress, log)
                for d in depths}
    return analyse(by_width, by_depth)


def analyse(by_width, by_depth) -> dict:
    mw = {w: run_metrics(r) for w, r in by_width.items()}
    md = {d: run_metrics(r) for d, r in by_depth.items()}
    fits = {}
    for axis, table in (("width", mw), ("depth", md)):
        for m in ("relative_distance", "variance_ratio"):
            xs = np.concatenate([[k] * len(v[m]) for k, v in table.items()])
            ys = np.concatenate([v[m] for v in table.values()])
            fits[f"{m}_vs_{axis}"] = fit_power(xs, ys)
    r = {"by_width": mw, "by_depth": md, "fits": fits,
         "runs": list(by_width.values()) + list(by_depth.values())}
    r["summary"] = verdict(r)
    return r


def verdict(r) -> dict:
    f = r["fits"]["relative_distance_vs_width"]
    lo, hi = f["ci"]
    if f["slope"] is None:
        v = "inconclusive"
    elif hi is not None and hi < 0:
        v = "supported"
    elif lo is not None and lo > 0:
        v = "contradicted"
    else:
        v = "inconclusive"
    table = lambda t: {str(k): {m: [float(x) for x in vals[m]] for m in METRICS} for k, vals in t.items()}
    return {"claim": "the relative change of the weights shrinks with width (lazy regime)",
            "by_width": table(r["by_width"]), "by_depth": table(r["by_depth"]), "exponents": r["fits"],
            "verdict": v,
            "verdict_reason": (f"||theta_T - theta_0|| / ||theta_0|| ~ width^{f['slope']:.3g} (95% interval "
                               f"{lo:.3g}..{hi:.3g}) over widths {list(r['by_width'])}; the variance ratio "
                               f"~ width^{r['fits']['variance_ratio_vs_width']['slope']:.3g}, relative distance "
                               f"~ depth^{r['fits']['relative_distance_vs_depth']['slope']:.3g}.")
            if f["slope"] is not None else "too few widths to fit an exponent"}


def plot(results, out) -> list:
    paths = []
    fig, axes = plots.plt.subplots(2, len(METRICS), figsize=(4 * len(METRICS), 7.5))
    data = {}
    for row, (axis, table) in enumerate((("width", results["by_width"]), ("depth", results["by_depth"]))):
        keys = np.array(list(table))
        for j, m in enumerate(METRICS):
            vals = np.array([table[k][m] for k in keys])  # (K, instances)
            ax = axes[row, j]
            ax.plot(np.repeat(keys, vals.shape[1]), vals.ravel(), "o", ms=3, alpha=0.6)
            ax.plot(keys, vals.mean(axis=1), "-", lw=1.5)
            ax.set_xscale("log", base=2)
            if m in ("relative_distance", "variance_ratio", "final_loss"):
                ax.set_yscale("log")
            ax.set_xlabel(f"{axis} ({'depth 3' if axis == 'width' else 'width 16'})")
            ax.set_title(m.replace("_", " "), fontsize=9)
            data[f"{axis}_{m}"] = vals
        data[f"{axis}_values"] = keys
    fig.suptitle("Weight changes vs. width and depth (dots: instances, line: mean)")
    fig.tight_layout()
    paths += plots.save(fig, out, "fig_width_depth")
    save_data(out, "fig_width_depth", **data)
    s = results["summary"]
    write_json(out / "summary.json", s)
    (out / "summary.md").write_text("\n".join([
        "# Weight changes vs. width and depth", "", f"Claim: *{s['claim']}*.", "",
        f"**Verdict: {s['verdict']}.** {s['verdict_reason']}", "", "![width and depth](fig_width_depth.png)", ""]))
    return paths


if __name__ == "__main__":
    from mlpsim.cli import main
    raise SystemExit(main(["study", "width-depth", *__import__("sys").argv[1:]]))
