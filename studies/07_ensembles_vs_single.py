"""Study 07: at a fixed parameter budget, an ensemble of small nets or one larger net?

Question (the seed notebook's investigation 4): larger single networks vs.
ensembles of networks. Budget: M = 8 seed networks (1-8-8-8-1, 169
parameters each, 1352 in all) against one 1-25-25-25-1 network (1376
parameters), both trained like the seed (Adam, 15000 steps, the piecewise
target, 2000 points). Three repeats of each: 24 small networks form three
ensembles of 8; three large networks.

Compared: the training MSE and the MSE against the target on a 2001-point grid
of the *averaged* ensemble (the mean of its members' outputs) and of the large
net; the members' own losses; the weight distributions (variance ratio,
kurtosis change) and the effective-rank change of the largest matrix, relative
to its size.

The finding (which is better on the grid MSE in every repeat, or "similar")
is descriptive: three repeats each, no claim of :mod:`mlpsim.claims`.

Runtime: about 2 minutes on 2 cores (``--scale`` multiplies steps).
Run: ``mlpsim study ensembles --out out/ensembles``.
"""
import numpy as np

from mlpsim import analysis, claims, plots
from mlpsim.config import preset
from mlpsim.data import piecewise
from mlpsim.study import save_data, scaled

NAME = "07_ensembles_vs_single"
M = 8
REPEATS = 3
LARGE_WIDTH = 25


def configs(scale=1.0, steps=15000) -> dict:
    common = {"data.n": 2000, "train.steps": steps, "train.checkpoint_every": max(1, steps // 30)}
    w = LARGE_WIDTH
    return {"small": scaled(preset("seed").with_values({**common, "train.instances": M * REPEATS}), scale),
            "large": scaled(preset("seed").with_values({**common, "model.widths": [1, w, w, w, 1],
                                                        "train.instances": REPEATS}), scale)}


def analyse(runs) -> dict:
    small, large = runs["small"], runs["large"]
    x, y = small.data()
    grid = np.linspace(-3, 3, 2001)[:, None]
    target = piecewise(grid)
    f_small = small.net.forward(np.asarray(small.params[:, -1]), x)      # (24, n, 1)
    g_small = small.net.forward(np.asarray(small.params[:, -1]), grid)
    f_large = large.net.forward(np.asarray(large.params[:, -1]), x)
    g_large = large.net.forward(np.asarray(large.params[:, -1]), grid)
    groups = np.arange(M * REPEATS).reshape(REPEATS, M)
    ens_train = np.array([np.mean((f_small[g].mean(0) - y) ** 2) for g in groups])
    ens_grid = np.array([np.mean((g_small[g].mean(0) - target) ** 2) for g in groups])
    r = {"ensemble_train_mse": ens_train, "ensemble_grid_mse": ens_grid,
         "member_train_mse": np.mean((f_small - y) ** 2, axis=(1, 2)),
         "large_train_mse": np.mean((f_large - y) ** 2, axis=(1, 2)),
         "large_grid_mse": np.mean((g_large - target) ** 2, axis=(1, 2)),
         "small_metrics": analysis.run_metrics(small), "large_metrics": analysis.run_metrics(large),
         "n_params": {"ensemble": M * small.net.n_params, "large": large.net.n_params},
         "grid": grid[:, 0], "ensemble_output": np.stack([g_small[g].mean(0)[:, 0] for g in groups]),
         "large_output": g_large[:, :, 0], "target": target[:, 0], "runs": [small, large]}
    return r


def notes(results) -> list:
    r = results
    e, s = r["ensemble_grid_mse"], r["large_grid_mse"]
    finding = ("the averaged ensemble is better in every repeat" if e.max() < s.min() else
               "the single large net is better in every repeat" if s.max() < e.min() else
               "neither is better in every repeat (similar)")
    sm, lm = r["small_metrics"], r["large_metrics"]
    f = claims.fmt
    return [
        f"At {r['n_params']['ensemble']} vs {r['n_params']['large']} parameters, {finding}: grid MSE against the "
        f"target {', '.join(f(v) for v in e)} (averaged ensembles of {M}) vs {', '.join(f(v) for v in s)} "
        f"(1-{LARGE_WIDTH}-{LARGE_WIDTH}-{LARGE_WIDTH}-1 nets); members alone: median training MSE "
        f"{f(np.median(r['member_train_mse']))}. Descriptive: {REPEATS} repeats each.",
        f"Weights: variance ratio {f(np.mean(sm['variance_ratio']))} (small nets) vs "
        f"{f(np.mean(lm['variance_ratio']))} (large); kurtosis change {f(np.mean(sm['kurtosis_change']))} vs "
        f"{f(np.mean(lm['kurtosis_change']))}; effective-rank change of the largest matrix per row "
        f"{f(np.mean(sm['effective_rank_change'] / 8))} vs {f(np.mean(lm['effective_rank_change'] / LARGE_WIDTH))}."]


def plot(results, out) -> list:
    r = results
    fig, (a, b) = plots.plt.subplots(1, 2, figsize=(13, 4.5))
    a.plot(r["grid"], r["target"], "k-", lw=2, label="target")
    for i, f in enumerate(r["ensemble_output"]):
        a.plot(r["grid"], f, color="tab:blue", lw=1, label="averaged ensemble of 8" if i == 0 else None)
    for i, f in enumerate(r["large_output"]):
        a.plot(r["grid"], f, color="tab:red", lw=1, ls="--", label=f"one 1-{LARGE_WIDTH}-{LARGE_WIDTH}-"
               f"{LARGE_WIDTH}-1 net" if i == 0 else None)
    a.set_xlabel("x")
    a.set_ylabel("output")
    a.set_title("functions at a fixed budget (3 repeats each)")
    a.legend(fontsize=8)
    labels = ["members (train)", "ensemble (train)", "ensemble (grid)", "large (train)", "large (grid)"]
    vals = [r["member_train_mse"], r["ensemble_train_mse"], r["ensemble_grid_mse"], r["large_train_mse"],
            r["large_grid_mse"]]
    for i, v in enumerate(vals):
        b.plot([i] * len(v), v, "o", alpha=0.7)
    b.set_xticks(range(len(labels)))
    b.set_xticklabels(labels, rotation=20)
    b.set_yscale("log")
    b.set_ylabel("MSE")
    b.set_title("losses")
    fig.tight_layout()
    paths = plots.save(fig, out, "fig_ensembles_vs_single")
    save_data(out, "fig_ensembles_vs_single", grid=r["grid"], target=r["target"], ensemble_output=r["ensemble_output"],
              large_output=r["large_output"], **{l.replace(" ", "_").replace("(", "").replace(")", ""): v
                                                 for l, v in zip(labels, vals)})
    return paths
