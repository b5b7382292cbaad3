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

Verdicts (through :mod:`mlpsim.claims`, judged per weight matrix):
``broadening`` (the variance grows) and ``longer_tails`` (the shape changes:
excess kurtosis against a null drawn from the initial distribution), on every
run analysed. By default those are the seed network trained in float64 and in
float32 (the notebook's precision), 20 instances each; the summary says
whether the two precisions agree. Tail figures pool the layers only after
z-scoring each one (layers start with different scales, so raw pooling mixes
scale into shape).

Runtime: about a minute of training per run on 2 cores (reused when already
trained), then about 10 s of figures.
Run: ``mlpsim study distribution --preset seed --out out/dist`` (any preset,
``--config`` or an existing ``--run``), or as part of ``mlpsim study seed``.
"""
import numpy as np

from mlpsim import analysis, claims, plots
from mlpsim.config import preset
from mlpsim.study import VERDICT_INSTANCES, label_verdicts, primary, save_data, scaled

NAME = "02_weight_distribution"
CLAIMS = ("broadening", "longer_tails")


def configs(scale=1.0) -> dict:
    """The seed network in float64 and in float32, with enough instances for verdicts."""
    cfg = scaled(preset("seed").with_values({"train.instances": VERDICT_INSTANCES}), scale)
    return {"float64": cfg, "float32": cfg.with_values({"train.dtype": "float32"})}


def analyse(runs, n_boot=200, seed=0) -> dict:
    run = primary(runs)
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
    # |z| of every weight, z-scored within its own matrix and instance, then pooled: the
    # shape of the tails without the layers' different scales
    r["abs_z_initial"], r["abs_z_final"] = (np.concatenate(
        [np.abs(_zscore(np.asarray(P[:, c][:, idx], dtype=np.float64))).ravel()
         for _, _, idx in analysis.weight_layers(net) if idx.size > 1]) for c in (0, -1))
    r["runs"] = runs
    return r


def _zscore(v):
    """Standardize the last axis (weights of one matrix) per instance."""
    sd = v.std(axis=-1, keepdims=True)
    return (v - v.mean(axis=-1, keepdims=True)) / np.where(sd > 0, sd, 1.0)


def verdicts(results) -> list:
    """Both claims on every run analysed, labelled with the run's name."""
    out = []
    for label, run in results["runs"].items():
        out += label_verdicts([claims.evaluate(c, run) for c in CLAIMS], label)
    results["verdicts"] = out
    return out


def notes(results) -> list:
    """The per-layer numbers in words, and whether float32 and float64 agree."""
    r = results
    lw = r["layer_var_w"]
    lines = ["Variance ratio end / initialization of each weight matrix (median over instances, run "
             f"{next(iter(r['runs']))}): " + ", ".join(
                 f"W{l + 1} {claims.fmt(np.median(lw[:, -1, l] / lw[:, 0, l]))}" for l in range(lw.shape[2]))]
    dtypes = {label: run.config.train.dtype for label, run in r["runs"].items()}
    vs = r.get("verdicts") or verdicts(r)
    if set(dtypes.values()) == {"float32", "float64"}:
        for c in CLAIMS:
            st = {v.label: v.status for v in vs if v.claim == c}
            by = {dtypes[label]: s for label, s in st.items()}
            agree = len(set(by.values())) == 1
            lines.append(f"{c}: float64 {by.get('float64')}, float32 {by.get('float32')} -- "
                         + ("the precisions agree." if agree else "the precisions DISAGREE: read the float32 "
                            "verdict's reason before trusting either."))
    h = r["hill"]
    lines.append(f"Hill tail index of all parameters pooled (k = {h['k']}): {claims.fmt(np.median(h['alpha'][:, 0]))} "
                 f"at initialization, {claims.fmt(np.median(h['alpha'][:, -1]))} at the end (medians); with "
                 f"{r['run'].net.n_params} values its bootstrap intervals are wide, so it is shown, not judged.")
    return lines


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
        # The axis zooms in on small differences: the value a zero-mean vector would have
        # (sum of squares 1, or 1 per layer, over P values) is drawn for scale.
        P = r["run"].net.n_params
        blocks = 1 if mode == "total_norm" else r["run"].net.n_layers  # one per layer (W and b)
        ref = blocks / P
        axes[1, j].axhline(ref, color="k", ls="--", lw=0.8,
                           label=f"{'1' if blocks == 1 else blocks}/P = {ref:.5f} (mean-zero reference)")
        axes[1, j].legend(fontsize=7)
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
    plots.ccdf(axes[0], r["abs_z_initial"], f"initialization (step {int(steps[0])})")
    plots.ccdf(axes[0], r["abs_z_final"], f"end (step {int(steps[-1])})")
    zz = np.linspace(0, max(r["abs_z_final"].max(), r["abs_z_initial"].max()), 200)
    from scipy.special import erfc
    axes[0].plot(zz, erfc(zz / np.sqrt(2)), "k:", lw=1, label="Gaussian")
    axes[0].set_xlabel("|z|: weight in standard deviations of its own matrix")
    axes[0].set_title("tail of |z|, weights z-scored per matrix, then pooled")
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
    save_data(out, "fig8_tails", steps=steps, abs_z_initial=r["abs_z_initial"], abs_z_final=r["abs_z_final"],
              kurtosis=k, hill_steps=hs, hill_alpha=h["alpha"], hill_lo=h["lo"], hill_hi=h["hi"])

    return paths
