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

``summary.json`` holds ``effective_rank_initial`` / ``effective_rank_final``
(per weight layer, per instance) and ``verdict`` / ``verdict_reason``:
``supported`` when in more than half of the matrices that can lose rank
(min(out, in) >= 2) the effective rank falls in at least 80 % of the
instances *and* ends below both randomized controls in at least 80 %;
``contradicted`` when in more than half it rises in 80 %; else ``inconclusive``.

Runtime: seconds after training. By default it runs on the ``seed`` preset and
on the wider ``wide`` preset (1-64-64-64-1, about a minute of training), so
that rank measures have room to move; ``--preset``/``--config``/``--run``
choose one run instead.
Run: ``mlpsim study rank --out out/rank``.
"""
import numpy as np

from mlpsim import analysis, plots
from mlpsim.study import obtain_run, save_data, write_json

NAME = "03_rank"
DEFAULT_PRESETS = ("seed", "wide")
AGREEMENT = 0.8
#: Measures shown and judged; numerical and Galanti ranks are integers that rarely move.
MEASURES = analysis.RANK_MEASURES


def run(config, run_dir, progress=None, log=print) -> dict:
    return analyse(obtain_run(config, run_dir, progress=progress, log=log))


def analyse(run, seed=0, n_points=101, n_inputs=1000) -> dict:
    net, P = run.net, run.params
    E, C, _ = P.shape
    steps = np.asarray(run.steps)
    picks = np.unique(np.linspace(0, C - 1, min(C, n_points)).round().astype(int))
    sub = np.asarray(P[:, picks], dtype=np.float64)
    shuffled = analysis.shuffle_within_layers(sub, net, seed)
    matched = analysis.matched_random(sub, net, seed + 1)
    layers = []
    for l in range(net.n_layers):
        shape = net.layout[2 * l].shape
        s = analysis.singular_values(P, net, l)
        entry = {"layer": l, "shape": shape, "s_initial": s[:, 0], "s_final": s[:, -1],
                 "trained": analysis.rank_measures(s, shape),
                 "shuffled": analysis.rank_measures(analysis.singular_values(shuffled, net, l), shape),
                 "matched": analysis.rank_measures(analysis.singular_values(matched, net, l), shape)}
        if min(shape) >= analysis.MIN_EIGENVALUES:
            entry["esd"] = [
                {"initial": analysis.spectral_stats(net.view(P[e, 0], f"W{l + 1}")),
                 "final": analysis.spectral_stats(net.view(P[e, -1], f"W{l + 1}"))} for e in range(E)]
        layers.append(entry)
    x, _ = run.data()
    rep = analysis.representation_ranks(net, P, x[:n_inputs], picks) if net.n_layers > 1 else None
    r = {"run": run, "steps": steps, "picks": picks, "layers": layers, "representation_rank": rep}
    r["summary"] = verdict(r)
    return r


def verdict(r) -> dict:
    run = r["run"]
    E = run.params.shape[0]
    need = int(np.ceil(AGREEMENT * E))
    eff_init = [l["trained"]["effective_rank"][:, 0] for l in r["layers"]]
    eff_final = [l["trained"]["effective_rank"][:, -1] for l in r["layers"]]
    table, falls, rises, judged = [], 0, 0, 0
    for l in r["layers"]:
        name = f"W{l['layer'] + 1}"
        for m in MEASURES:
            t, sh, ma = l["trained"][m], l["shuffled"][m], l["matched"][m]
            change = t[:, -1] - t[:, 0]
            table.append({"layer": name, "measure": m, "initial_mean": float(t[:, 0].mean()),
                          "final_mean": float(t[:, -1].mean()), "change_mean": float(change.mean()),
                          "change_std": float(change.std(ddof=1)) if E > 1 else 0.0,
                          "shuffled_final_mean": float(sh[:, -1].mean()),
                          "matched_final_mean": float(ma[:, -1].mean())})
        if min(l["shape"]) < 2:
            continue
        judged += 1
        t = l["trained"]["effective_rank"]
        below = (t[:, -1] < l["shuffled"]["effective_rank"][:, -1]) & (t[:, -1] < l["matched"]["effective_rank"][:, -1])
        if np.sum(t[:, -1] < t[:, 0]) >= need and np.sum(below) >= need:
            falls += 1
        if np.sum(t[:, -1] > t[:, 0]) >= need:
            rises += 1
    if judged == 0:
        v, why = "inconclusive", "no weight matrix has 2 or more rows and columns, so no rank can fall"
    elif falls * 2 > judged:
        v, why = "supported", ""
    elif rises * 2 > judged:
        v, why = "contradicted", ""
    else:
        v, why = "inconclusive", ""
    per_layer = "; ".join(
        f"W{l['layer'] + 1} {l['shape'][0]}x{l['shape'][1]}: effective rank "
        f"{l['trained']['effective_rank'][:, 0].mean():.3g} -> {l['trained']['effective_rank'][:, -1].mean():.3g} "
        f"(shuffled control {l['shuffled']['effective_rank'][:, -1].mean():.3g}, "
        f"matched random {l['matched']['effective_rank'][:, -1].mean():.3g})"
        for l in r["layers"] if min(l["shape"]) >= 2)
    reason = why or (f"effective rank falls in >= {need}/{E} instances and ends below both randomized "
                     f"controls in {falls} of {judged} matrices that can lose rank; it rises in {rises}. {per_layer}.")
    rep = r["representation_rank"]
    return {"claim": "as training progresses the rank of the weight matrices decreases",
            "run_dir": str(run.path), "widths": list(run.net.widths), "instances": E,
            "effective_rank_initial": eff_init, "effective_rank_final": eff_final,
            "measures": table,
            "representation_effective_rank_initial": None if rep is None else rep[:, 0].T,
            "representation_effective_rank_final": None if rep is None else rep[:, -1].T,
            "esd": [{"layer": f"W{l['layer'] + 1}", "alpha_initial": [d["initial"]["alpha"] for d in l["esd"]],
                     "alpha_final": [d["final"]["alpha"] for d in l["esd"]],
                     "alpha_se_final": [d["final"]["alpha_se"] for d in l["esd"]]}
                    for l in r["layers"] if "esd" in l],
            "verdict": v, "verdict_reason": reason}


def plot(results, out) -> list:
    r = results
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
        paths += plots.save(fig, out, "fig_rank_measures")
        save_data(out, "fig_rank_measures", steps=steps, control_steps=steps[picks],
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
    paths += plots.save(fig, out, "fig_spectra")
    save_data(out, "fig_spectra", **{f"W{l['layer'] + 1}_initial": l["s_initial"] for l in r["layers"]},
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
                ax.loglog(x, frac * (x / fit["xmin"]) ** (1 - fit["alpha"]), "-", color=color,
                          label=f"alpha = {fit['alpha']:.2f} ± {fit['alpha_se']:.2f}")
                data[f"{name}_{key}_eigenvalues"] = lam
            ax.set_xlabel("eigenvalue of W^T W")
            ax.set_ylabel("P(lambda >= x)")
            ax.set_title(f"{name}: ESD and power-law fit (CSN)", fontsize=10)
            ax.legend(fontsize=7)
        fig.tight_layout()
        paths += plots.save(fig, out, "fig_esd")
        save_data(out, "fig_esd", **data)

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
        paths += plots.save(fig, out, "fig_representation_rank")
        save_data(out, "fig_representation_rank", steps=steps[picks], effective_rank=rep)
    write_summary(r["summary"], out)
    return paths


def write_summary(summary, out):
    from pathlib import Path
    out = Path(out)
    write_json(out / "summary.json", summary)
    s = summary
    lines = ["# Does the rank of the weight matrices decrease during training?", "",
             f"Network {s['widths']}, {s['instances']} instances; run `{s['run_dir']}`.", "",
             f"**Verdict: {s['verdict']}.** {s['verdict_reason']}", "",
             "| layer | measure | initial | final | change (mean ± std) | shuffled final | matched final |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in s["measures"]:
        lines.append(f"| {row['layer']} | {row['measure']} | {row['initial_mean']:.3g} | {row['final_mean']:.3g} | "
                     f"{row['change_mean']:.3g} ± {row['change_std']:.2g} | {row['shuffled_final_mean']:.3g} | "
                     f"{row['matched_final_mean']:.3g} |")
    lines.append("")
    for name in ("fig_rank_measures", "fig_spectra", "fig_esd", "fig_representation_rank"):
        if (out / f"{name}.png").exists():
            lines += [f"![{name}]({name}.png)", ""]
    (out / "summary.md").write_text("\n".join(lines))


if __name__ == "__main__":
    from mlpsim.cli import main
    raise SystemExit(main(["study", "rank", *__import__("sys").argv[1:]]))
