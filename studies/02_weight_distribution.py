"""Study 02: does the weight distribution broaden, and do its tails get longer?

Question (the seed notebook's claim 1, investigations 5-8): "as the network
trains, the distribution of weight values broadens; the tails get longer."
Is that a change of *shape*, or only of *scale*? Per layer? For single weights?

Figures:
  fig5_per_layer   per-layer density images (weights) and variance vs. step,
                   weights and biases separately
  fig6_normalized  density and variance after dividing by the total norm and
                   by each layer's norm
  fig7_trajectories  all parameters of instance 1 vs. step (colored by layer),
                   and distance from initialization per layer, all instances
  fig8_tails       CCDF of |w| at init vs. end (pooled), excess kurtosis and
                   Hill tail index over training with bands

``summary.json`` / ``summary.md`` give the verdict, computed from the data:
variance ratio final/initial (per instance, per layer), kurtosis, max|w|/std,
Hill tail index with bootstrap intervals. The verdict is ``supported`` when
both halves are: *broadening* when every instance's variance ratio is > 1
(contradicted when every one is < 1), *longer tails* when in at least 80 % of
the instances a majority of three scale-free measures says heavier (excess
kurtosis up, max|w|/std up, Hill index down; contradicted when 80 % say
lighter). ``contradicted`` if either half is, else ``inconclusive``. How many
Hill changes are significant (disjoint 95 % bootstrap intervals) is reported.

Runtime: seconds after training (about 10 s of figures for the seed run).
Run: ``mlpsim study distribution --preset seed --out out/dist`` (any preset,
``--config`` or an existing ``--run``), or as part of ``mlpsim study seed``.
"""
import numpy as np

from mlpsim import analysis, plots
from mlpsim.study import obtain_run, save_data, write_json

NAME = "02_weight_distribution"
#: Share of instances that must agree for a verdict other than inconclusive.
AGREEMENT = 0.8


def run(config, run_dir, progress=None, log=print) -> dict:
    """Train (or reuse) the run of ``config`` and compute the analyses and the verdict."""
    return analyse(obtain_run(config, run_dir, progress=progress, log=log))


def analyse(run, n_boot=200, seed=0) -> dict:
    net, P = run.net, run.params
    E, C, _ = P.shape
    steps = np.asarray(run.steps)
    r = {"run": run, "steps": steps, "n_layers": net.n_layers}
    all_idx = analysis.select(net, "all")
    mom = analysis.moments(P, all_idx)
    r["moments"] = mom
    # per layer, weights and biases separately
    r["layer_counts"] = []
    r["layer_var_w"] = np.empty((E, C, net.n_layers))
    r["layer_var_b"] = np.empty((E, C, net.n_layers))
    for l in range(net.n_layers):
        w_idx = analysis.select(net, f"W{l + 1}")
        r["layer_counts"].append(analysis.histograms(P[:1], w_idx)["counts"][0])
        r["layer_var_w"][..., l] = analysis.moments(P, w_idx)["var"] if w_idx.size > 1 else np.nan
        b_idx = analysis.select(net, f"b{l + 1}")
        r["layer_var_b"][..., l] = analysis.moments(P, b_idx)["var"] if b_idx.size > 1 else np.nan
    r["edges"] = analysis.BINCOUNT_EDGES
    # normalized by the total norm and by per-layer norms: edges scaled to the data
    r["normalized"] = {}
    for mode in ("total_norm", "layer_norm"):
        q = analysis.normalize(P, net, mode)
        m = float(np.nanmax(np.abs(q[0]))) * 1.0001
        edges = np.linspace(-m, m, 41)
        r["normalized"][mode] = {"counts": analysis.histograms(q[:1], all_idx, edges)["counts"][0],
                                 "edges": edges, "var": analysis.moments(q, all_idx)["var"],
                                 "kurtosis": analysis.moments(q, all_idx)["kurtosis"]}
    r["trajectory0"] = np.asarray(P[0], dtype=np.float64)
    r["distance"] = analysis.distance_from_init(P, net)
    r["hill"] = analysis.hill_over_training(P, all_idx, n_boot=n_boot, seed=seed)
    r["abs_initial"] = np.abs(np.asarray(P[:, 0], dtype=np.float64))
    r["abs_final"] = np.abs(np.asarray(P[:, -1], dtype=np.float64))
    r["summary"] = verdict(r)
    return r


def verdict(r) -> dict:
    """The numbers for claim 1 and the verdict computed from them."""
    mom, hill = r["moments"], r["hill"]
    E = mom["var"].shape[0]
    var_ratio = mom["var"][:, -1] / mom["var"][:, 0]
    by_layer = (r["layer_var_w"][:, -1] / r["layer_var_w"][:, 0]).T  # (L, E)
    k0, k1 = mom["kurtosis"][:, 0], mom["kurtosis"][:, -1]
    m0, m1 = mom["max_over_std"][:, 0], mom["max_over_std"][:, -1]
    a0, a1 = hill["alpha"][:, 0], hill["alpha"][:, -1]
    significant_hill = int(np.sum(hill["hi"][:, -1] < hill["lo"][:, 0]))
    heavier_votes = (k1 > k0).astype(int) + (m1 > m0) + (a1 < a0)
    lighter_votes = (k1 < k0).astype(int) + (m1 < m0) + (a1 > a0)
    heavier = int(np.sum(heavier_votes >= 2))
    lighter = int(np.sum(lighter_votes >= 2))
    need = int(np.ceil(AGREEMENT * E))
    v_broad = ("supported" if np.all(var_ratio > 1) else
               "contradicted" if np.all(var_ratio < 1) else "inconclusive")
    v_tails = ("supported" if heavier >= need else "contradicted" if lighter >= need else "inconclusive")
    if v_broad == v_tails == "supported":
        v = "supported"
    elif "contradicted" in (v_broad, v_tails):
        v = "contradicted"
    else:
        v = "inconclusive"
    norm_k = r["normalized"]["total_norm"]["kurtosis"]
    reason = (
        f"Broadening {v_broad}: the variance ratio final/initial over all parameters is "
        f"{_range(var_ratio)}. Longer tails {v_tails}: by the scale-free measures excess kurtosis "
        f"{_mean(k0)} -> {_mean(k1)} (up in {int(np.sum(k1 > k0))}/{E}), max|w|/std {_mean(m0)} -> "
        f"{_mean(m1)} (up in {int(np.sum(m1 > m0))}/{E}) and Hill tail index {_mean(a0)} -> {_mean(a1)} "
        f"(down, i.e. heavier, in {int(np.sum(a1 < a0))}/{E}; with disjoint 95% bootstrap intervals in "
        f"only {significant_hill}/{E}), a majority of the three says heavier in {heavier}/{E} instances "
        f"and lighter in {lighter}/{E} (needed: {need}). Dividing by the total norm fixes the variance "
        f"near 1/P, so what remains is shape: the kurtosis of the normalized values goes "
        f"{_mean(norm_k[:, 0])} -> {_mean(norm_k[:, -1])}.")
    return {
        "claim": "as the network trains, the distribution of weight values broadens; the tails get longer",
        "run_dir": str(r["run"].path), "instances": E, "steps_final": int(r["steps"][-1]),
        "variance_ratio": var_ratio, "variance_ratio_by_layer": by_layer,
        "variance_ratio_mean": float(var_ratio.mean()), "variance_ratio_std": float(var_ratio.std(ddof=1)) if E > 1 else 0.0,
        "kurtosis_initial": k0, "kurtosis_final": k1,
        "max_over_std_initial": m0, "max_over_std_final": m1,
        "tail_index_initial": a0, "tail_index_final": a1,
        "tail_index_ci_initial": np.stack([hill["lo"][:, 0], hill["hi"][:, 0]], axis=1),
        "tail_index_ci_final": np.stack([hill["lo"][:, -1], hill["hi"][:, -1]], axis=1),
        "tail_index_k": hill["k"],
        "normalized_kurtosis_initial": norm_k[:, 0], "normalized_kurtosis_final": norm_k[:, -1],
        "instances_heavier_tails": heavier, "instances_lighter_tails": lighter,
        "tail_index_significant_decreases": significant_hill,
        "verdict_broadening": v_broad, "verdict_tails": v_tails,
        "verdict": v, "verdict_reason": reason,
    }


def _mean(v):
    v = np.asarray(v, dtype=float)
    return f"{np.nanmean(v):.3g} ± {np.nanstd(v, ddof=1) if v.size > 1 else 0:.2g}"


def _range(v):
    return f"{np.nanmin(v):.3g}..{np.nanmax(v):.3g} (mean {np.nanmean(v):.3g})"


def plot(results, out) -> list:
    r = results
    steps, L = r["steps"], r["n_layers"]
    E = r["moments"]["var"].shape[0]
    paths = []
    layer_names = [f"layer {l + 1}" for l in range(L)]

    fig, axes = plots.plt.subplots(2, L, figsize=(4.2 * L, 8), squeeze=False)
    for l in range(L):
        plots.density_image(axes[0, l], r["layer_counts"][l], r["edges"], steps, log=True,
                            title=f"W{l + 1} values (instance 1, log color)")
        s = analysis.ensemble_stats(r["layer_var_w"][..., l])
        plots.band(axes[1, l], steps, s["mean"], s["min"], s["max"], f"weights W{l + 1}")
        if np.all(np.isfinite(r["layer_var_b"][..., l])):  # a 1-unit layer has no bias variance
            s = analysis.ensemble_stats(r["layer_var_b"][..., l])
            plots.band(axes[1, l], steps, s["mean"], s["min"], s["max"], f"biases b{l + 1}")
        axes[1, l].set_xlabel("training step")
        axes[1, l].set_ylabel("variance (mean, band: min-max over instances)")
        axes[1, l].legend(fontsize=8)
    fig.suptitle("Per-layer distributions over training")
    fig.tight_layout()
    paths += plots.save(fig, out, "fig5_per_layer")
    save_data(out, "fig5_per_layer", counts=np.stack(r["layer_counts"]), edges=r["edges"], steps=steps,
              var_weights=r["layer_var_w"], var_biases=r["layer_var_b"])

    fig, axes = plots.plt.subplots(2, 2, figsize=(12, 9))
    data = {}
    for j, (mode, label) in enumerate([("total_norm", "divided by the total norm ||θ||"),
                                       ("layer_norm", "divided by each layer's norm")]):
        n = r["normalized"][mode]
        plots.density_image(axes[0, j], n["counts"], n["edges"], steps, log=True, title=f"instance 1, {label}")
        plots.lines_over_training(axes[1, j], steps, n["var"], labels=[f"instance {e + 1}" for e in range(E)],
                                  title=f"variance, {label}", ylabel="variance")
        data.update({f"{mode}_counts": n["counts"], f"{mode}_edges": n["edges"], f"{mode}_var": n["var"],
                     f"{mode}_kurtosis": n["kurtosis"]})
    fig.suptitle("Normalized parameters: change of shape, not of scale")
    fig.tight_layout()
    paths += plots.save(fig, out, "fig6_normalized")
    save_data(out, "fig6_normalized", steps=steps, **data)

    fig, (a, b) = plots.plt.subplots(1, 2, figsize=(13, 5))
    net = r["run"].net
    for l in range(L):
        idx = analysis.select(net, f"layer{l + 1}")
        color = plots.LAYER_COLORS(l)
        a.plot(steps, r["trajectory0"][:, idx], color=color, lw=0.6, alpha=0.7)
        a.plot([], [], color=color, label=layer_names[l])
    a.set_xlabel("training step")
    a.set_ylabel("parameter value")
    a.set_title(f"all {net.n_params} parameters of instance 1")
    a.legend(fontsize=8)
    d = r["distance"]["per_layer"]
    for l in range(L):
        for e in range(E):
            b.plot(steps, d[e, :, l], color=plots.LAYER_COLORS(l), lw=1, alpha=0.7,
                   label=layer_names[l] if e == 0 else None)
    b.set_xlabel("training step")
    b.set_ylabel("||θ_t - θ_0|| of the layer")
    b.set_title("distance from initialization per layer (all instances)")
    b.legend(fontsize=8)
    fig.tight_layout()
    paths += plots.save(fig, out, "fig7_trajectories")
    save_data(out, "fig7_trajectories", steps=steps, params_instance1=r["trajectory0"],
              distance_per_layer=d, distance_total=r["distance"]["total"])

    fig, axes = plots.plt.subplots(1, 3, figsize=(16, 4.8))
    plots.ccdf(axes[0], r["abs_initial"], f"initialization (step {int(steps[0])})")
    plots.ccdf(axes[0], r["abs_final"], f"end (step {int(steps[-1])})")
    axes[0].set_title("tail of |w|, pooled over instances")
    axes[0].legend(fontsize=8)
    k = r["moments"]["kurtosis"]
    s = analysis.ensemble_stats(k)
    plots.band(axes[1], steps, s["mean"], s["mean"] - s["std"], s["mean"] + s["std"], "mean ± std over instances")
    axes[1].set_xlabel("training step")
    axes[1].set_ylabel("excess kurtosis")
    axes[1].set_title("kurtosis over training")
    axes[1].legend(fontsize=8)
    h = r["hill"]
    hs = steps[h["checkpoints"]]
    for e in range(E):
        plots.band(axes[2], hs, h["alpha"][e], h["lo"][e], h["hi"][e], f"instance {e + 1}")
    axes[2].set_xlabel("training step")
    axes[2].set_ylabel(f"Hill tail index (k = {h['k']}), 95% bootstrap band")
    axes[2].set_title("tail index over training (smaller: heavier tail)")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    paths += plots.save(fig, out, "fig8_tails")
    save_data(out, "fig8_tails", steps=steps, abs_initial=r["abs_initial"], abs_final=r["abs_final"],
              kurtosis=k, hill_steps=hs, hill_alpha=h["alpha"], hill_lo=h["lo"], hill_hi=h["hi"])

    write_summary(r["summary"], out)
    return paths


def write_summary(summary, out):
    from pathlib import Path
    out = Path(out)
    write_json(out / "summary.json", summary)
    s = summary
    lines = [
        "# Does the weight distribution broaden during training?", "",
        f"Claim: *{s['claim']}*.", "",
        f"**Verdict: {s['verdict']}.** {s['verdict_reason']}", "",
        f"Run analysed: `{s['run_dir']}` ({s['instances']} instances, {s['steps_final']} steps).", "",
        "| instance | variance ratio | kurtosis init → end | max/std init → end | Hill α init → end |",
        "| --- | --- | --- | --- | --- |",
    ]
    for e in range(s["instances"]):
        lines.append(f"| {e + 1} | {s['variance_ratio'][e]:.3g} | {s['kurtosis_initial'][e]:.3g} → "
                     f"{s['kurtosis_final'][e]:.3g} | {s['max_over_std_initial'][e]:.3g} → "
                     f"{s['max_over_std_final'][e]:.3g} | {s['tail_index_initial'][e]:.3g} → "
                     f"{s['tail_index_final'][e]:.3g} |")
    lines += ["", "Variance ratio of the weights per layer (mean over instances): "
              + ", ".join(f"W{l + 1} {np.mean(v):.3g}" for l, v in enumerate(s["variance_ratio_by_layer"])), ""]
    for name, caption in [("fig1_histograms", "Histograms every 100th checkpoint"),
                          ("fig2_density", "Bin counts over training"),
                          ("fig3_surface", "The same as a surface"),
                          ("fig4_variance", "Variance over training"),
                          ("fig5_per_layer", "Per layer"), ("fig6_normalized", "Normalized"),
                          ("fig7_trajectories", "Trajectories"), ("fig8_tails", "Tails"),
                          ("fig9_loss", "Loss")]:
        if (out / f"{name}.png").exists():
            lines += [f"![{caption}]({name}.png)", ""]
    (out / "summary.md").write_text("\n".join(lines))


if __name__ == "__main__":
    from mlpsim.cli import main
    raise SystemExit(main(["study", "distribution", *__import__("sys").argv[1:]]))
