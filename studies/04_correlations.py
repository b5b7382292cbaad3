"""Study 04: are correlations between weights exponentially damped with network distance?

Question (the seed notebook's investigation 2): "how correlated are the weights
across the network; could be that correlations are exponentially damped... or
maybe not. As a function of network depth."

For networks with 2..8 hidden layers of width 8 (64 instances each, trained
on the seed's target), after aligning hidden units to instance 1 (Hungarian
matching on incoming weights):

* across the ensemble: mean squared correlation of two weights over the 64
  instances, minus its null value 1/(E-1), vs. their network distance (1 =
  sharing a unit), at the end of training; controls: the same at
  initialization and for trained weights shuffled within layers;
* across training time: the same for the updates of one network's weights
  between checkpoints;
* activations vs. depth: the correlation map c_l of pairs of inputs per hidden
  layer (Schoenholz et al. 2017), at initialization and after training.

The verdict (one per depth) is the claim ``correlation_decay`` of
:mod:`mlpsim.claims`: the training-specific correlation is the excess of the
trained ensemble over the *same alignment applied to the initial ensemble*
(alignment alone makes matched units correlate), per pair category and per
distance, against paired permutations. The descriptive fits of the raw excess
(exponential vs power law, decay lengths, noise floor) and the input-pair
correlation map are listed as findings.

Runtime: about 3 minutes of training on 2 cores (7 ensembles of 64 networks,
3000 steps on 1000 points), then about a minute of analysis.
Run: ``mlpsim study correlations --out out/correlations``.
"""
import numpy as np

from mlpsim import analysis, claims, plots
from mlpsim.config import preset
from mlpsim.study import label_verdicts, save_data, scaled

NAME = "04_correlations"
DEPTHS = tuple(range(2, 9))
#: A fit "wins" at a depth only if the other's residual sum of squares is at least this much larger.
DECISIVE = 2.0
WIDTH = 8


def depth_config(depth: int, instances: int = 64, steps: int = 3000):
    """The ensemble trained for hidden depth ``depth``."""
    return preset("seed").with_values({
        "model.widths": [1] + [WIDTH] * depth + [1], "data.n": 1000, "train.steps": steps,
        "train.checkpoint_every": max(1, steps // 30), "train.instances": instances})


def configs(scale=1.0) -> dict:
    return {f"depth {d}": scaled(depth_config(d), scale) for d in DEPTHS}


def analyse(runs) -> dict:
    per_depth = {run.net.n_layers - 1: analyse_run(run) for run in runs.values()}
    return {"per_depth": per_depth, "runs": runs, "described": describe(per_depth)}


def analyse_run(run, seed=0, n_pairs=200) -> dict:
    net = run.net
    P = run.params
    w_idx, *_ = analysis.edge_table(net)
    dist = analysis.edge_distances(net)
    final, _ = analysis.align(np.asarray(P[:, -1]), net)
    initial, _ = analysis.align(np.asarray(P[:, 0]), net)
    shuffled = analysis.shuffle_within_layers(final, net, seed)
    ens = {name: analysis.correlation_by_distance(theta[:, w_idx], dist)
           for name, theta in [("trained", final), ("initial", initial), ("shuffled", shuffled)]}
    updates = np.diff(np.asarray(P[0], dtype=np.float64), axis=0)[:, w_idx]
    time_corr = analysis.correlation_by_distance(updates, dist)
    x, _ = run.data()
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    pa, pb = rng.integers(0, x.shape[0], (2, n_pairs))
    act = {key: np.mean([analysis.input_pair_correlation(net, P[e, c], x[pa], x[pb])
                         for e in range(P.shape[0])], axis=0)
           for key, c in (("initial", 0), ("trained", -1))}
    fits = {}
    for key, corr in [("ensemble", ens["trained"]), ("time", time_corr)]:
        try:  # fit only what stands above the noise floor (3 standard errors)
            keep = corr["above_noise"]
            fits[key] = analysis.fit_decay(corr["distance"][keep], corr["excess_r2"][keep], seed=seed)
        except ValueError as exc:
            fits[key] = {"error": str(exc)}
    cats = analysis.pair_categories(net)
    by_category = {name: analysis.mean_r2_by_category(theta[:, w_idx], cats)
                   for name, theta in [("trained", final), ("initial", initial)]}
    # depth scale of the input-pair correlation map: successive changes |c_l+1 - c_l| ~ exp(-l / xi_c)
    depth_scale = {}
    for key, c in act.items():
        steps_ = np.abs(np.diff(c))
        try:
            depth_scale[key] = analysis.fit_decay(np.arange(1, steps_.size + 1), steps_, n_boot=100, seed=seed)
        except ValueError as exc:
            depth_scale[key] = {"error": str(exc)}
    R = np.corrcoef(final[:, w_idx].T)
    R0 = np.corrcoef(initial[:, w_idx].T)
    return {"run": run, "depth": net.n_layers - 1, "ensemble": ens, "time": time_corr, "activation": act,
            "fits": fits, "corr_final": R, "corr_initial": R0, "by_category": by_category,
            "activation_depth_scale": depth_scale}


def describe(per_depth) -> dict:
    """The descriptive fits of the raw ensemble excess (not a verdict: see ``verdicts``)."""
    rows, exp_better, pow_better, above = [], 0, 0, 0
    for d, r in per_depth.items():
        ens = r["ensemble"]
        fit = r["fits"]["ensemble"]
        above_controls = bool(ens["trained"]["excess_r2"][0] > max(ens["initial"]["excess_r2"][0],
                                                                   ens["shuffled"]["excess_r2"][0]))
        above += above_controls
        row = {"depth": d, "excess_r2_trained": ens["trained"]["excess_r2"],
               "excess_r2_initial": ens["initial"]["excess_r2"],
               "excess_r2_shuffled": ens["shuffled"]["excess_r2"], "above_controls": above_controls,
               "fit": fit, "time_fit": r["fits"]["time"],
               "range": int(ens["trained"]["distance"][ens["trained"]["above_noise"]].max(initial=0)),
               "by_category": {key: dict(zip(v["name"], v["excess_r2"])) for key, v in r["by_category"].items()},
               "activation_depth_scale": {key: v.get("exponential", {}).get("xi")
                                          for key, v in r["activation_depth_scale"].items()},
               "activation_corr_initial": r["activation"]["initial"],
               "activation_corr_trained": r["activation"]["trained"]}
        if "best" in fit and fit["rss_ratio"] >= DECISIVE:
            exp_better += fit["best"] == "exponential"
            pow_better += fit["best"] == "power_law"
        rows.append(row)
    n = len(rows)
    deepest = rows[-1]
    xi = deepest["fit"].get("exponential", {})
    short = sum(r["range"] <= 2 for r in rows)
    if short * 2 > n:
        why = (f"in {short}/{n} depths the ensemble correlation falls to the noise floor (3 standard errors) "
               "within 2 steps of network distance: the weights are correlated only with their immediate "
               "neighbours, a damping faster than one step, too short to tell an exponential from a power law")
    elif above * 2 <= n:
        why = f"the trained ensemble's excess correlation at distance 1 exceeds both controls in only {above}/{n} depths"
    elif exp_better * 2 > n:
        why = (f"the exponential fits decisively better (residuals >= {DECISIVE:g}x smaller) "
               f"than the power law in {exp_better}/{n} depths")
    elif pow_better * 2 > n:
        why = (f"the power law fits decisively better (residuals >= {DECISIVE:g}x smaller) "
               f"than the exponential in {pow_better}/{n} depths")
    else:
        why = (f"neither form wins decisively (residuals >= {DECISIVE:g}x smaller) in most "
               f"depths: exponential in {exp_better}/{n}, power law in {pow_better}/{n}")
    detail = "; ".join(
        f"depth {r['depth']}: above noise up to distance {r['range']}, excess r2 at d=1 {r['excess_r2_trained'][0]:.3g} (init {r['excess_r2_initial'][0]:.3g}, "
        f"shuffled {r['excess_r2_shuffled'][0]:.3g}), best {r['fit'].get('best', 'n/a')} "
        f"(rss ratio {r['fit'].get('rss_ratio', float('nan')):.2g}, xi {r['fit'].get('exponential', {}).get('xi', float('nan')):.3g})"
        for r in rows)
    best_overall = "exponential" if exp_better > pow_better else "power_law" if pow_better > exp_better else "tie"
    c = per_depth[deepest["depth"]]["ensemble"]["trained"]
    upper = None
    if deepest["range"] >= 1 and deepest["range"] < c["distance"].max():
        # the excess falls from its value at the last resolved distance to below 3 SE within one step:
        # an exponential that does so has xi <= 1 / ln(excess / (3 SE))
        k = deepest["range"] - 1
        ratio = c["excess_r2"][k] / (3 * c["null_se"][k + 1])
        upper = float(1.0 / np.log(ratio)) if ratio > 1 else None
    return {"claim": "correlations between weights are exponentially damped with network distance",
            "depths": [r["depth"] for r in rows], "by_depth": rows,
            "decay_length": {"depth": deepest["depth"], "xi": xi.get("xi"), "ci": xi.get("xi_ci"),
                             "upper_bound": upper},
            "decay_length_by_depth": {r["depth"]: {"xi": r["fit"].get("exponential", {}).get("xi"),
                                                   "ci": r["fit"].get("exponential", {}).get("xi_ci")}
                                      for r in rows},
            "best_fit": best_overall, "best_fit_by_depth": {r["depth"]: r["fit"].get("best") for r in rows},
            "pattern": why, "detail": detail}


def plot(results, out) -> list:
    per_depth = results["per_depth"]
    paths = []
    depths = list(per_depth)
    fig, axes = plots.plt.subplots(1, 3, figsize=(17, 4.8))
    data = {}
    for d in depths:
        r = per_depth[d]
        c = r["ensemble"]["trained"]
        line, = axes[0].semilogy(c["distance"], np.clip(c["excess_r2"], 1e-6, None), "o-", label=f"depth {d}")
        fit = r["fits"]["ensemble"]
        if "exponential" in fit and np.isfinite(fit["exponential"]["xi"]):
            dd = np.linspace(1, c["distance"].max(), 50)
            axes[0].semilogy(dd, fit["exponential"]["amplitude"] * np.exp(-dd / fit["exponential"]["xi"]), "--",
                             color=line.get_color(), lw=0.8)
        data[f"depth{d}_distance"] = c["distance"]
        data[f"depth{d}_excess_r2_trained"] = c["excess_r2"]
        data[f"depth{d}_excess_r2_initial"] = r["ensemble"]["initial"]["excess_r2"]
        data[f"depth{d}_excess_r2_shuffled"] = r["ensemble"]["shuffled"]["excess_r2"]
        t = r["time"]
        axes[1].semilogy(t["distance"], np.clip(t["excess_r2"], 1e-6, None), "o-", label=f"depth {d}")
        data[f"depth{d}_time_excess_r2"] = t["excess_r2"]
    r = per_depth[depths[-1]]
    for key, style in (("initial", ":"), ("shuffled", "-.")):
        c = r["ensemble"][key]
        axes[0].semilogy(c["distance"], np.clip(c["excess_r2"], 1e-6, None), style, color="k",
                         label=f"{key} control (depth {depths[-1]})")
    axes[0].set_title("across the aligned ensemble (dashed: exponential fit)")
    axes[1].set_title("across training time: updates of one network")
    for ax in axes[:2]:
        ax.set_xlabel("network distance between weights")
        ax.set_ylabel("mean r^2 - 1/(N-1)")
        ax.legend(fontsize=7)
    for d in depths:
        a = per_depth[d]["activation"]
        line, = axes[2].plot(np.arange(1, d + 1), a["trained"], "o-", label=f"depth {d} trained")
        axes[2].plot(np.arange(1, d + 1), a["initial"], "x:", color=line.get_color())
        data[f"depth{d}_activation_initial"] = a["initial"]
        data[f"depth{d}_activation_trained"] = a["trained"]
    axes[2].set_xlabel("hidden layer")
    axes[2].set_ylabel("correlation map c_l of input pairs")
    axes[2].set_title("activations vs. depth (x: initialization)")
    axes[2].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    paths += plots.save(fig, out, "fig_corr_vs_distance")
    save_data(out, "fig_corr_vs_distance", **data)

    ref = per_depth[3] if 3 in per_depth else per_depth[depths[0]]
    fig, axes = plots.plt.subplots(1, 2, figsize=(12, 5.5))
    for ax, key, title in [(axes[0], "corr_initial", "initialization"), (axes[1], "corr_final", "end of training")]:
        im = ax.imshow(ref[key], cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(f"aligned weight correlations across instances, {title} (depth {ref['depth']})", fontsize=9)
        ax.set_xlabel("weight index (layers in order)")
        ax.set_ylabel("weight index")
        fig.colorbar(im, ax=ax, label="correlation")
    fig.tight_layout()
    paths += plots.save(fig, out, "fig_corr_heatmap")
    save_data(out, "fig_corr_heatmap", corr_initial=ref["corr_initial"], corr_final=ref["corr_final"])
    return paths


def verdicts(results) -> list:
    return [v for label, run in results["runs"].items()
            for v in label_verdicts([claims.evaluate("correlation_decay", run)], label)]


def notes(results) -> list:
    s = results["described"]
    dl = s["decay_length"]
    lines = [f"Raw ensemble excess r^2 (trained, above 1/(N-1); descriptive): {s['pattern']}.",
             f"Per depth: {s['detail']}.",
             f"Decay length at depth {dl['depth']}: xi = {claims.fmt(dl['xi'])} "
             + (f"(95 % interval {claims.fmt(dl['ci'][0])} to {claims.fmt(dl['ci'][1])})" if dl.get("ci") else "")
             + (f"; from the noise floor, xi <= {claims.fmt(dl['upper_bound'])}" if dl.get("upper_bound") else "")
             + "."]
    for r in s["by_depth"]:
        tr, ini = r["by_category"]["trained"], r["by_category"]["initial"]
        lines.append(f"Depth {r['depth']}, excess r^2 by pair category (trained / aligned initial): "
                     + ", ".join(f"{c} {claims.fmt(tr[c])} / {claims.fmt(ini.get(c))}" for c in tr) + ".")
    lines.append("Depth scale of the input-pair correlation map (exponential fit of |c_l+1 - c_l|): "
                 + "; ".join(f"depth {r['depth']}: initial {claims.fmt(r['activation_depth_scale'].get('initial'))}, "
                             f"trained {claims.fmt(r['activation_depth_scale'].get('trained'))}" for r in s["by_depth"])
                 + ".")
    return lines
