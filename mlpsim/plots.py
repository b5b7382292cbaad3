"""Figures from analysis results (matplotlib, Agg backend). Arrays in, Figures out.

Conventions: the x axis (or the vertical axis of density images) is the
training step; counts use viridis, signed values a diverging map centred at 0
(``RdBu_r``); every figure is saved as PNG and PDF by :func:`save`.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

LAYER_COLORS = plt.get_cmap("tab10")


def save(fig, out, name: str, formats=("png", "pdf")) -> list:
    """Write ``fig`` as ``out/name.png`` and ``out/name.pdf``; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def histogram_grid(counts, edges, steps, title: str, below=None, above=None):
    """Small multiples: one histogram per selected checkpoint, shared axes.

    counts (K, bins), steps (K,). ``below``/``above`` (K,): how many values fell
    outside the bins; drawn as overflow bars (hatched, one bin wide, just beyond
    each end) with their counts written beside, so nothing is dropped silently.
    """
    K = len(steps)
    cols = 4
    rows = -(-K // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.2 * rows), sharex=True, sharey=True)
    axes = np.atleast_1d(axes).ravel()
    widths = np.diff(edges)
    K_below = np.zeros(K, dtype=int) if below is None else np.asarray(below, dtype=int)
    K_above = np.zeros(K, dtype=int) if above is None else np.asarray(above, dtype=int)
    for k, (ax, c, s) in enumerate(zip(axes, counts, steps)):
        ax.bar(edges[:-1], c, width=widths, align="edge", color="tab:blue", edgecolor="none")
        for n, x0, where in ((K_below[k], edges[0] - widths[0], "below"), (K_above[k], edges[-1], "above")):
            if n:
                ax.bar([x0], [n], width=widths[0], align="edge", color="tab:red", hatch="//", edgecolor="white")
                ax.annotate(f"{n} {where}", (x0 + widths[0] / 2, n), fontsize=7, color="tab:red",
                            ha="center", va="bottom")
        ax.set_title(f"step {int(s)}", fontsize=9)
    for ax in axes[K:]:
        ax.axis("off")
    for ax in axes[(rows - 1) * cols:]:
        ax.set_xlabel("parameter value" + (" (red: outside the bins)" if K_below.any() or K_above.any() else ""))
    for ax in axes[::cols]:
        ax.set_ylabel("count")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def density_image(ax, counts, edges, steps, log=False, title=""):
    """Counts (C, bins) as an image: weight value across, training step going up."""
    data = np.asarray(counts, dtype=float)
    norm = LogNorm(vmin=1, vmax=max(2.0, data.max())) if log else None
    shown = np.where(data > 0, data, np.nan) if log else data
    im = ax.imshow(shown, aspect="auto", origin="lower", cmap="viridis", norm=norm,
                   extent=[edges[0], edges[-1], steps[0], steps[-1]],
                   interpolation="nearest" if log else "bilinear")  # bilinear smears NaN holes
    ax.set_xlabel("parameter value")
    ax.set_ylabel("training step")
    ax.set_title(title, fontsize=10)
    ax.figure.colorbar(im, ax=ax, label="count" + (" (log)" if log else ""))
    return im


def density_pair(counts, edges, steps, title: str):
    """The notebook's ListDensityPlot, with linear and log color scales side by side."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 5))
    density_image(a, counts, edges, steps, log=False, title="linear color scale")
    density_image(b, counts, edges, steps, log=True, title="log color scale")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def surface_pair(counts, edges, steps, title: str):
    """The notebook's ListPlot3D: the count matrix as a surface, linear and log10(1 + count) height."""
    centers = 0.5 * (edges[:-1] + edges[1:])
    X, Y = np.meshgrid(centers, steps)
    fig = plt.figure(figsize=(13, 5.5))
    for i, (z, label) in enumerate([(counts, "count"), (np.log10(1.0 + counts), "log10(1 + count)")]):
        ax = fig.add_subplot(1, 2, i + 1, projection="3d")
        ax.plot_surface(X, Y, z, cmap="viridis", rstride=max(1, len(steps) // 150), cstride=1,
                        linewidth=0, antialiased=False)
        ax.set_xlabel("parameter value")
        ax.set_ylabel("training step")
        ax.set_zlabel(label)
        ax.set_title(label + " height", fontsize=10)
    fig.suptitle(title)
    return fig


def lines_over_training(ax, steps, values, labels=None, title="", ylabel="", logy=False, alpha=0.9):
    """One line per row of ``values`` (K, C) against ``steps``."""
    values = np.atleast_2d(values)
    for k, row in enumerate(values):
        ax.plot(steps, row, lw=1.2, alpha=alpha, label=None if labels is None else labels[k])
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if logy:
        ax.set_yscale("log")
    if labels is not None:
        ax.legend(fontsize=8)


def band(ax, steps, mean, lo, hi, label, color=None):
    """A line with a shaded band (e.g. ensemble spread or a confidence interval)."""
    line, = ax.plot(steps, mean, lw=1.5, label=label, color=color)
    ax.fill_between(steps, lo, hi, alpha=0.25, color=line.get_color(), linewidth=0)


def ccdf(ax, values, label):
    """Complementary CDF of |values| on log-log axes."""
    a = np.sort(np.abs(np.ravel(values)))
    a = a[a > 0]
    p = 1.0 - np.arange(a.size) / a.size
    ax.loglog(a, p, lw=1.5, label=label)
    ax.set_xlabel("|parameter|")
    ax.set_ylabel("P(|w| >= x)")


def draw_network(ax, net, theta, title="", vmax=None, cmap="RdBu_r"):
    """The network as a grid: neuron (layer, position), every present connection a
    line colored by its weight (diverging map centred at 0), neurons colored by bias.

    Returns the line collection (for a colorbar).
    """
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize
    theta = np.asarray(theta, dtype=np.float64)
    ws = net.weights(theta)
    bs = net.biases(theta)
    if vmax is None:
        vmax = max(float(np.max(np.abs(theta))), 1e-12)
    norm = Normalize(-vmax, vmax)

    def ypos(l, j):
        w = net.widths[l]
        return j - (w - 1) / 2.0

    segs, vals = [], []
    for l, W in enumerate(ws):
        present = np.ones(W.shape, bool) if net.masks[l] is None else net.masks[l].astype(bool)
        for o in range(W.shape[0]):
            for i in range(W.shape[1]):
                if present[o, i]:
                    segs.append([(l, ypos(l, i)), (l + 1, ypos(l + 1, o))])
                    vals.append(W[o, i])
    order = np.argsort(np.abs(vals))  # strong connections drawn on top
    lc = LineCollection([segs[i] for i in order], array=np.asarray(vals)[order], cmap=cmap, norm=norm,
                        linewidths=1.6)
    ax.add_collection(lc)
    for l in range(len(net.widths)):
        ys = [ypos(l, j) for j in range(net.widths[l])]
        colors = "lightgray" if l == 0 else plt.get_cmap(cmap)(norm(bs[l - 1]))
        ax.scatter([l] * len(ys), ys, s=60, c=colors, edgecolors="k", linewidths=0.6, zorder=3)
    ax.set_xlim(-0.3, len(net.widths) - 0.7)
    half = max(net.widths) / 2.0 + 0.5
    ax.set_ylim(-half, half)
    ax.set_xticks(range(len(net.widths)))
    ax.set_xticklabels(["in"] + [f"h{l}" for l in range(1, len(net.widths) - 1)] + ["out"])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    return lc


def animate_networks(net, thetas, labels, path, vmax=None, fps=4):
    """An animated GIF of ``draw_network`` over the rows of ``thetas`` (pillow writer).

    Every frame has the same colour bar (one scale for the whole animation) and
    its label (e.g. the step and the loss) as the title.
    """
    from matplotlib.animation import FuncAnimation, PillowWriter
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    thetas = np.asarray(thetas, dtype=np.float64)
    vmax = vmax or float(np.max(np.abs(thetas)))
    fig, (ax, cax) = plt.subplots(1, 2, figsize=(6.6, 4.5), gridspec_kw={"width_ratios": [30, 1]})
    fig.colorbar(ScalarMappable(Normalize(-vmax, vmax), "RdBu_r"), cax=cax, label="weight (neurons: bias)")

    def frame(i):
        ax.clear()
        draw_network(ax, net, thetas[i], title=labels[i], vmax=vmax)
    anim = FuncAnimation(fig, frame, frames=len(thetas))
    anim.save(path, writer=PillowWriter(fps=fps))
    plt.close(fig)
    return path


def atlas_heatmaps(out, conditions, per, found, claim_statuses) -> list:
    """The atlas's pictures: an overview of how generic each regularity is, and one heat map per
    observable (conditions x layers, colour = median change, + / - = significant up / down) and
    one for the claims (conditions x claims, colour = status).

    ``per``: ``{(condition, observable): {"layers": {layer: (direction, median, p)}}}`` as
    :func:`mlpsim.atlas.condition_directions` returns it.
    """
    paths = []
    if found:
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(found) + 1.5))
        colors = {"generic": "tab:green", "common": "tab:orange", "not generic": "tab:gray"}
        labels = [f"{r['name']} ({r['direction']})" for r in found]
        ax.barh(range(len(found)), [r["share"] for r in found], color=[colors[r["label"]] for r in found])
        ax.set_yticks(range(len(found)))
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0.9, color="k", ls="--", lw=0.8)
        ax.axvline(0.5, color="k", ls=":", lw=0.8)
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of conditions in the dominant direction (dashed: generic, dotted: common)")
        for k, v in colors.items():
            ax.bar([0], [0], color=v, label=k)
        ax.legend(fontsize=8, loc="lower right")
        ax.set_title("How generic is each regularity?")
        fig.tight_layout()
        paths += save(fig, out, "atlas_overview")
    observables = sorted({o for (_, o) in per})
    n = len(observables) + (1 if claim_statuses else 0)
    if n == 0:
        return paths
    cols = min(3, n)
    rows = -(-n // cols)
    height = 0.28 * len(conditions) + 1.6
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, height * rows), squeeze=False)
    for ax, obs in zip(axes.ravel(), observables):
        layers = sorted({l for (c, o), d in per.items() if o == obs for l in d["layers"]})
        M = np.full((len(conditions), len(layers)), np.nan)
        marks = {}
        for i, c in enumerate(conditions):
            d = per.get((c, obs))
            for j, l in enumerate(layers):
                if d and l in d["layers"]:
                    direction, med, _ = d["layers"][l]
                    M[i, j] = med
                    marks[(i, j)] = {"up": "+", "down": "-"}.get(direction, "")
        vmax = np.nanmax(np.abs(M)) if np.any(np.isfinite(M)) else 1.0
        cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.85")
        im = ax.imshow(M, aspect="auto", cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
        for (i, j), m in marks.items():
            ax.text(j, i, m, ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(layers)))
        ax.set_xticklabels(layers, fontsize=7, rotation=45)
        ax.set_yticks(range(len(conditions)))
        ax.set_yticklabels(conditions, fontsize=6)
        ax.set_title(obs, fontsize=9)
        fig.colorbar(im, ax=ax, label="median change (log ratio or difference)")
    if claim_statuses:
        ax = axes.ravel()[len(observables)]
        claims = sorted({k for (_, k) in claim_statuses})
        code = {"supported": 1.0, "contradicted": -1.0, "inconclusive": 0.0}
        M = np.array([[code.get(claim_statuses.get((c, k)), np.nan) for k in claims] for c in conditions])
        cmap = plt.get_cmap("PiYG", 3).with_extremes(bad="0.85")
        im = ax.imshow(M, aspect="auto", cmap=cmap, vmin=-1.5, vmax=1.5, interpolation="nearest")
        ax.set_xticks(range(len(claims)))
        ax.set_xticklabels(claims, fontsize=7, rotation=45)
        ax.set_yticks(range(len(conditions)))
        ax.set_yticklabels(conditions, fontsize=6)
        ax.set_title("claims (mlpsim.claims)", fontsize=9)
        bar = fig.colorbar(im, ax=ax, ticks=[-1, 0, 1])
        bar.ax.set_yticklabels(["contradicted", "inconclusive", "supported"], fontsize=7)
    for ax in axes.ravel()[n:]:
        ax.set_axis_off()
    fig.suptitle("Trained vs initial, per condition and layer (+ / -: significant up / down; grey: not measured)")
    fig.tight_layout()
    paths += save(fig, out, "atlas_heatmaps")
    return paths
