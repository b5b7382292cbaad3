"""Study 03: does the rank of the weight matrices decrease during training?

Question (the seed notebook's claim 12): "as training progresses the rank of
the weight matrices decreases (?)". A rank measure that changes proves nothing
until it is compared with what the same measure does on matched random
weights, so every measure is also computed on three controls: the initial
weights, the trained weights shuffled within each layer (same values, no
structure), and fresh Gaussian weights with each layer's mean and variance.

Figures:
  fig_rank_measures   five rank measures vs. step for each weight matrix with at
                      least 2 rows and columns, with the control bands
  fig_spectra         singular values at initialization vs. the end
  fig_esd             eigenvalue distribution of W^T W with its power-law fit
                      (only layers with >= 50 eigenvalues)
  fig_representation_rank  effective rank of each hidden layer's activations

The verdict is the claim ``rank_decrease`` of :mod:`mlpsim.claims`: per
weight matrix, effective and stable rank must fall from initialization *and*
end below a distribution of within-matrix shuffles of the instance's own
trained entries (the matched-Gaussian control of the figures adds nothing for
these scale-free measures and is not used in the verdict). Integer ranks are
shown but cannot carry the claim. The ESD power-law exponent is reported only
where a power law describes the tail better than an exponential and a
log-normal (Clauset-Shalizi-Newman likelihood ratios); a Gaussian bulk gets
"no power law".

Runtime: about 6 minutes on 2 cores with nothing trained (the seed network,
20 instances; and the ``wide`` network 1-64-64-64-1, 20 instances), then
seconds. ``--preset``/``--config``/``--run`` choose one run instead.
Run: ``mlpsim study rank --out out/rank``.
"""
import numpy as np

from mlpsim import analysis, claims, plots
from mlpsim.config import preset
from mlpsim.study import VERDICT_INSTANCES, label_verdicts, plot_each, save_data, scaled

NAME = "03_rank"
#: Measures shown; numerical and Galanti ranks are integers that rarely move.
MEASURES = analysis.RANK_MEASURES


def configs(scale=1.0) -> dict:
    """The seed network, and a wider one where spectra have room to move."""
    return {name: scaled(preset(name).with_values({"train.instances": VERDICT_INSTANCES}), scale)
            for name in ("seed", "wide")}


def analyse(runs) -> dict:
    """Every run's rank measures, controls, spectra and representation ranks, by label."""
    return {"per_run": {label: analyse_run(run) for label, run in runs.items()}, "runs": runs}


def analyse_run(run, seed=0, n_points=101, n_inputs=1000) -> dict:
    net, P = run.net, run.params
    E, C, _ = P.shape
    steps = np.asarray(run.steps)
    picks = analysis.pick_checkpoints(C, n_points)
    sub = np.asarray(P[:, picks], dtype=np.float64)
    shuffled = analysis.shuffle_within_layers(sub, net, seed)
    matched = analysis.matched_random(sub, net, seed + 1)
    layers = []
    for l in range(net.n_layers):
        shape = net.layout[2 * l].shape
        s = analysis.singular_values(P, net, l + 1)
        entry = {"layer": l, "shape": shape, "s_initial": s[:, 0], "s_final": s[:, -1],
                 "trained": analysis.rank_measures(s, shape),
                 "shuffled": analysis.rank_measures(analysis.singular_values(shuffled, net, l + 1), shape),
                 "matched": analysis.rank_measures(analysis.singular_values(matched, net, l + 1), shape)}
        if min(shape) >= analysis.MIN_EIGENVALUES:  # spectral_stats also compares the tail models
            entry["esd"] = [
                {"initial": analysis.spectral_stats(net.view(P[e, 0], f"W{l + 1}")),
                 "final": analysis.spectral_stats(net.view(P[e, -1], f"W{l + 1}"))} for e in range(E)]
        layers.append(entry)
    x, _ = run.data()
    rep = analysis.representation_ranks(net, P, x[:n_inputs], picks) if net.n_layers > 1 else None
    return {"run": run, "steps": steps, "picks": picks, "layers": layers, "representation_rank": rep}


def verdicts(results) -> list:
    return [v for label, run in results["runs"].items()
            for v in label_verdicts([claims.evaluate("rank_decrease", run)], label)]


def notes(results) -> list:
    """The ESD tail models in words: where (if anywhere) a power law describes the spectrum."""
    lines = []
    for label, r in results["per_run"].items():
        for l in r["layers"]:
            if "esd" not in l:
                continue
            name = f"W{l['layer'] + 1}"
            for when in ("initial", "final"):
                fits = [d[when] for d in l["esd"]]
                pl = [f for f in fits if f["preferred"] == "power_law"]
                prefs = ", ".join(f"{k} {sum(f['preferred'] == k for f in fits)}"
                                  for k in ("power_law", "exponential", "lognormal", "undecided")
                                  if any(f["preferred"] == k for f in fits))
                alpha = (f"; alpha where it is: median {claims.fmt(np.median([f['alpha'] for f in pl]))}"
                         if pl else "; no alpha is reported (no power law)")
                lines.append(f"{label}, {name} ({'initialization' if when == 'initial' else 'end'}): ESD tail "
                             f"model preferred per instance (CSN likelihood ratios, level 0.1): {prefs}{alpha}.")
    return lines


def plot(results, out) -> list:
    """Figures of every run, named ``<label>_fig_...`` when there is more than one run."""
    return plot_each(results, out, plot_run)


def plot_run(r, out, prefix="") -> list:
    steps, picks = r["steps"], r["picks"]
    layers = [l for l in r["layers"] if min(l["shape"]) >= 2]
    paths = []
    if layers:
        fig, axes = plots.plt.subplots(len(MEASURES), len(layers), figsize=(4.2 * len(layers), 2.6 * len(MEASURES)),
                                       squeeze=False, sharex=True)
        for j, l in enumerate(layers):
            for i, m in enumerate(MEASURES):
                ax = axes[i, j]
                for key, label in [("trained", "trained"), ("shuffled", "shuffled (control)"),
                                   ("matched", "matched random (control)")]:
                    v = l[key][m]
                    x = steps if key == "trained" else steps[picks]
                    s = analysis.ensemble_stats(v)
                    plots.band(ax, x, s["mean"], s["min"], s["max"], label)
                ax.axhline(l["trained"][m][:, 0].mean(), color="k", ls="--", lw=0.8, label="initial")
                ax.set_title(f"W{l['layer'] + 1} ({l['shape'][0]}x{l['shape'][1]}): {m}", fontsize=9)
                if i == len(MEASURES) - 1:
                    ax.set_xlabel("training step")
        axes[0, 0].legend(fontsize=7)
        fig.suptitle("Rank measures over training (band: min-max over instances)")
        fig.tight_layout()
        paths += plots.save(fig, out, prefix + "fig_rank_measures")
        save_data(out, prefix + "fig_rank_measures", steps=steps, control_steps=steps[picks],
                  **{f"W{l['layer'] + 1}_{k}_{m}": l[k][m] for l in layers
                     for k in ("trained", "shuffled", "matched") for m in MEASURES})

    fig, axes = plots.plt.subplots(1, len(r["layers"]), figsize=(3.6 * len(r["layers"]), 3.6), squeeze=False)
    for ax, l in zip(axes[0], r["layers"]):
        for e in range(l["s_initial"].shape[0]):
            ax.semilogy(np.arange(1, l["s_initial"].shape[1] + 1), l["s_initial"][e], "o-", color="tab:blue",
                        ms=3, lw=0.8, alpha=0.6, label="initial" if e == 0 else None)
            ax.semilogy(np.arange(1, l["s_final"].shape[1] + 1), l["s_final"][e], "s-", color="tab:red",
                        ms=3, lw=0.8, alpha=0.6, label="end" if e == 0 else None)
        ax.set_xlabel("index i")
        ax.set_ylabel("singular value s_i")
        ax.set_title(f"W{l['layer'] + 1} {l['shape'][0]}x{l['shape'][1]}", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths += plots.save(fig, out, prefix + "fig_spectra")
    save_data(out, prefix + "fig_spectra", **{f"W{l['layer'] + 1}_initial": l["s_initial"] for l in r["layers"]},
              **{f"W{l['layer'] + 1}_final": l["s_final"] for l in r["layers"]})

    wide = [l for l in r["layers"] if "esd" in l]
    if wide:
        fig, axes = plots.plt.subplots(1, len(wide), figsize=(4.5 * len(wide), 4), squeeze=False)
        data = {}
        for ax, l in zip(axes[0], wide):
            name = f"W{l['layer'] + 1}"
            for key, s, color in [("initial", l["s_initial"][0], "tab:blue"), ("final", l["s_final"][0], "tab:red")]:
                lam = np.sort(s ** 2)
                ccdf = 1.0 - np.arange(lam.size) / lam.size
                ax.loglog(lam, ccdf, ".", color=color, label=f"{key} (instance 1)")
                fit = l["esd"][0][key]
                x = np.geomspace(fit["xmin"], lam.max(), 50)
                frac = fit["n_tail"] / lam.size
                fit_label = (f"power law, alpha = {fit['alpha']:.2f} ± {fit['alpha_se']:.2f}"
                             if fit["preferred"] == "power_law" else
                             f"power-law fit not preferred ({fit['preferred']}): no alpha")
                ax.loglog(x, frac * (x / fit["xmin"]) ** (1 - fit["alpha"]), "-" if fit["preferred"] == "power_law"
                          else ":", color=color, label=fit_label)
                data[f"{name}_{key}_eigenvalues"] = lam
            ax.set_xlabel("eigenvalue of W^T W")
            ax.set_ylabel("P(lambda >= x)")
            ax.set_title(f"{name}: ESD and power-law fit (CSN)", fontsize=10)
            ax.legend(fontsize=7)
        fig.tight_layout()
        paths += plots.save(fig, out, prefix + "fig_esd")
        save_data(out, prefix + "fig_esd", **data)

    rep = r["representation_rank"]
    if rep is not None:
        fig, ax = plots.plt.subplots(figsize=(7, 4.5))
        for l in range(rep.shape[2]):
            s = analysis.ensemble_stats(rep[:, :, l])
            plots.band(ax, steps[picks], s["mean"], s["min"], s["max"], f"hidden layer {l + 1}")
        ax.set_xlabel("training step")
        ax.set_ylabel("effective rank of activations")
        ax.set_title("Rank of the hidden representations over the training inputs")
        ax.legend(fontsize=8)
        paths += plots.save(fig, out, prefix + "fig_representation_rank")
        save_data(out, prefix + "fig_representation_rank", steps=steps[picks], effective_rank=rep)
    return paths
