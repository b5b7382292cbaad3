"""Study 06: how do the weight changes scale with width and depth?

Question (the seed notebook's investigation 3): MLPs of different widths and
depths. How do the variance ratio, the kurtosis change, the relative distance
from initialization and the effective-rank change scale with width (depth 3,
widths 4-64) and with depth (width 16, 1-8 hidden layers)? Does the relative
change shrink with width (the "lazy" regime of wide networks)?

Each network is one run (3 instances, the seed's data and optimizer, 2000
steps on 1000 points); metrics per instance come from
:func:`mlpsim.analysis.run_metrics`; exponents are log-log least-squares slopes
with 95 % bootstrap intervals (:func:`mlpsim.analysis.fit_power`). These are
descriptive findings with intervals, not verdicts of :mod:`mlpsim.claims`
(three instances per network; the regularities atlas, ``mlpsim atlas``,
judges such questions over many conditions).

Runtime: about 2 minutes on 2 cores (``--scale`` multiplies steps).
Run: ``mlpsim study width-depth --out out/width_depth``.
"""
import numpy as np

from mlpsim import analysis, claims, plots
from mlpsim.config import preset
from mlpsim.study import save_data, scaled

NAME = "06_width_depth"
WIDTHS = (4, 8, 16, 32, 64)
DEPTHS = (1, 2, 3, 4, 6, 8)
METRICS = ("relative_distance", "variance_ratio", "kurtosis_change", "effective_rank_change", "final_loss")


def config(widths, steps=2000):
    return preset("seed").with_values({"model.widths": list(widths), "data.n": 1000, "train.steps": steps,
                                       "train.checkpoint_every": max(1, steps // 20), "train.instances": 3})


def configs(scale=1.0, widths=WIDTHS, depths=DEPTHS) -> dict:
    runs = {f"width {w}": config([1, w, w, w, 1]) for w in widths}
    runs.update({f"depth {d}": config([1] + [16] * d + [1]) for d in depths})
    return {label: scaled(cfg, scale) for label, cfg in runs.items()}


def analyse(runs) -> dict:
    by_width = {int(l.split()[1]): r for l, r in runs.items() if l.startswith("width ")}
    by_depth = {int(l.split()[1]): r for l, r in runs.items() if l.startswith("depth ")}
    return analyse_sizes(by_width, by_depth)


def analyse_sizes(by_width, by_depth) -> dict:
    mw = {w: analysis.run_metrics(r) for w, r in by_width.items()}
    md = {d: analysis.run_metrics(r) for d, r in by_depth.items()}
    fits = {}
    for axis, table in (("width", mw), ("depth", md)):
        for m in ("relative_distance", "variance_ratio"):
            xs = np.concatenate([[k] * len(v[m]) for k, v in table.items()])
            ys = np.concatenate([v[m] for v in table.values()])
            fits[f"{m}_vs_{axis}"] = analysis.fit_power(xs, ys)
    r = {"by_width": mw, "by_depth": md, "fits": fits,
         "runs": list(by_width.values()) + list(by_depth.values())}
    return r


def notes(results) -> list:
    """The fitted exponents in words: does the relative change shrink with width (lazy regime)?"""
    f = results["fits"]
    out = []
    for key, what in (("relative_distance_vs_width", "relative distance from init ||theta_T - theta_0|| / "
                       "||theta_0|| vs width"), ("variance_ratio_vs_width", "variance ratio vs width"),
                      ("relative_distance_vs_depth", "relative distance vs depth"),
                      ("variance_ratio_vs_depth", "variance ratio vs depth")):
        fit = f.get(key)
        if fit is None or fit["slope"] is None:
            out.append(f"{what}: too few sizes to fit an exponent.")
            continue
        lo, hi = fit["ci"]
        sign = ("shrinks" if hi < 0 else "grows" if lo > 0 else "has no clear trend")
        out.append(f"{what}: exponent {claims.fmt(fit['slope'])} (95 % bootstrap interval {claims.fmt(lo)} to "
                   f"{claims.fmt(hi)}, {fit['n']} instance-runs): it {sign}.")
    out.append("Widths " + ", ".join(map(str, results["by_width"])) + " (depth 3) and depths "
               + ", ".join(map(str, results["by_depth"])) + " (width 16), 3 instances each: descriptive, "
               "not a verdict.")
    return out


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
    return paths
