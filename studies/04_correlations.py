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

An exponential ``A exp(-d/xi)`` and a power law ``A d**-beta`` are fitted to
the excess squared correlation; ``summary.json`` holds ``decay_length`` (xi with
a bootstrap 95 % interval, for the deepest network), ``decay_length_by_depth``,
``best_fit`` (per depth and overall) and ``verdict`` / ``verdict_reason``:
``supported`` when the trained excess correlation is above both controls at
distance 1 in most depths and the exponential fits decisively better than the
power law (residual sum of squares at least ``DECISIVE`` = 2 times smaller) in
most depths; ``contradicted`` when the power law does; ``inconclusive``
otherwise. Note that alignment itself induces correlation (matching picks
similar units), which is why the aligned *initial* ensemble is a control.

Runtime: about 1-3 minutes of training (7 ensembles of 64 networks, 3000
steps on 1000 points), then seconds. ``--scale`` is not needed at this size.
Run: ``mlpsim study correlations --out out/correlations``.
"""
import numpy as np

from mlpsim import analysis, plots
from mlpsim.config import preset
from mlpsim.study import obtain_run, save_data, write_json

NAME = "04_correlations"
DEPTHS = tuple(range(2, 9))
#: A fit "wins" at a depth only if the other's residual sum of squares is at least this much larger.
DECISIVE = 2.0
WIDTH = 8


def depth_config(depth: int, instances: int = 64, steps: int = 3000):
    """The ensemble trained for hidden depth ``depth``."""
    return preset("seed").with_overrides([
        f"model.widths={[1] + [WIDTH] * depth + [1]}", "data.n=1000", f"train.steps={steps}",
        f"train.checkpoint_every={max(1, steps // 30)}", f"train.instances={instances}"])


def run_all(out, progress=None, log=print, depths=DEPTHS, instances=64, steps=3000, scale=1.0) -> dict:
    """Train (or reuse) the ensemble of every depth and analyse them all."""
    steps = max(30, int(round(steps * scale)))
    runs = {d: obtain_run(depth_config(d, instances, steps), out / f"depth_{d}" / "run",
                          progress=progress, log=log) for d in depths}
    return analyse_runs(runs)


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


def analyse_runs(runs) -> dict:
    per_depth = {d: analyse_run(r) for d, r in runs.items()}
    return {"per_depth": per_depth, "runs": list(runs.values()), "summary": verdict(per_depth)}


def verdict(per_depth) -> dict:
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
        v = "inconclusive"
        why = (f"in {short}/{n} depths the ensemble correlation falls to the noise floor (3 standard errors) "
               "within 2 steps of network distance: the weights are correlated only with their immediate "
               "neighbours, a damping faster than one step, too short to tell an exponential from a power law")
    elif above * 2 <= n:
        v = "inconclusive"
        why = f"the trained ensemble's excess correlation at distance 1 exceeds both controls in only {above}/{n} depths"
    elif exp_better * 2 > n:
        v, why = "supported", (f"the exponential fits decisively better (residuals >= {DECISIVE:g}x smaller) "
                               f"than the power law in {exp_better}/{n} depths")
    elif pow_better * 2 > n:
        v, why = "contradicted", (f"the power law fits decisively better (residuals >= {DECISIVE:g}x smaller) "
                                  f"than the exponential in {pow_better}/{n} depths")
    else:
        v, why = "inconclusive", (f"neither form wins decisively (residuals >= {DECISIVE:g}x smaller) in most "
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
            "verdict": v, "verdict_reason": f"{why}. {detail}."}


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
    write_summary(results["summary"], out)
    return paths


def write_summary(summary, out):
    write_json(out / "summary.json", summary)
    s = summary
    lines = ["# Are correlations between weights exponentially damped?", "",
             f"**Verdict: {s['verdict']}.** {s['verdict_reason']}", "",
             f"Decay length (depth {s['decay_length']['depth']}): xi = {s['decay_length']['xi']}, "
             f"95% interval {s['decay_length']['ci']}, upper bound from the noise floor "
             f"{s['decay_length']['upper_bound']}. Best fit overall: {s['best_fit']}.", "",
             "Excess squared correlation across the aligned ensemble by kind of pair (trained; initial):", "",
             "| depth | " + " | ".join(s["by_depth"][-1]["by_category"]["trained"]) + " |",
             "| --- |" + " --- |" * len(s["by_depth"][-1]["by_category"]["trained"])]
    for row in s["by_depth"]:
        cats = s["by_depth"][-1]["by_category"]["trained"]
        tr, ini = row["by_category"]["trained"], row["by_category"]["initial"]
        lines.append(f"| {row['depth']} | " + " | ".join(
            f"{tr[c]:.2g}; {ini[c]:.2g}" if c in tr else "" for c in cats) + " |")
    lines += ["", "Depth scale of the input-pair correlation map (exponential fit of |c_l+1 - c_l|): "
              + "; ".join(f"depth {r['depth']}: initial {r['activation_depth_scale'].get('initial')}, "
                          f"trained {r['activation_depth_scale'].get('trained')}" for r in s["by_depth"]), "",
              "![correlation vs distance](fig_corr_vs_distance.png)", "", "![heat map](fig_corr_heatmap.png)", ""]
    (out / "summary.md").write_text("\n".join(lines))


if __name__ == "__main__":
    from mlpsim.cli import main
    raise SystemExit(main(["study", "correlations", *__import__("sys").argv[1:]]))
