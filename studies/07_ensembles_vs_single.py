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

``summary.json``: the numbers, and ``verdict`` (``ensemble_better``,
``single_better`` or ``similar``: whether every repeat of one beats every
repeat of the other on the grid MSE) with ``verdict_reason``.

Runtime: about a minute (``--scale`` multiplies steps).
Run: ``mlpsim study ensembles --out out/ensembles``.
"""
import numpy as np

from mlpsim import plots
from mlpsim.config import preset
from mlpsim.data import piecewise
from mlpsim.study import obtain_run, save_data, write_json
from mlpsim.sweep import run_metrics

NAME = "07_ensembles_vs_single"
M = 8
REPEATS = 3
LARGE_WIDTH = 25


def run_all(out, progress=None, log=print, scale=1.0, steps=15000) -> dict:
    steps = max(20, int(round(steps * scale)))
    common = ["data.n=2000", f"train.steps={steps}", f"train.checkpoint_every={max(1, steps // 30)}"]
    small = obtain_run(preset("seed").with_overrides(common + [f"train.instances={M * REPEATS}"]),
                       out / "runs" / "small", progress, log)
    w = LARGE_WIDTH
    large = obtain_run(preset("seed").with_overrides(common + [f"model.widths=[1, {w}, {w}, {w}, 1]",
                                                               f"train.instances={REPEATS}"]),
                       out / "runs" / "large", progress, log)
    return analyse(small, large)


def analyse(small, large) -> dict:
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
         "small_metrics": run_metrics(small), "large_metrics": run_metrics(large),
         "n_params": {"ensemble": M * small.net.n_params, "large": large.net.n_params},
         "grid": grid[:, 0], "ensemble_output": np.stack([g_small[g].mean(0)[:, 0] for g in groups]),
         "large_output": g_large[:, :, 0], "target": target[:, 0], "runs": [small, large]}
    r["summary"] = verdict(r)
    return r


def verdict(r) -> dict:
    e, s = r["ensemble_grid_mse"], r["large_grid_mse"]
    if e.max() < s.min():
        v = "ensemble_better"
    elif s.max() < e.min():
        v = "single_better"
    else:
        v = "similar"
    sm, lm = r["small_metrics"], r["large_metrics"]
    rank_small = sm["effective_rank_change"] / 8
    rank_large = lm["effective_rank_change"] / LARGE_WIDTH
    reason = (f"grid MSE against the target: averaged ensembles {', '.join(f'{v:.3g}' for v in e)} vs large "
              f"nets {', '.join(f'{v:.3g}' for v in s)} ({r['n_params']['ensemble']} vs {r['n_params']['large']} "
              f"parameters); members alone {np.median(r['member_train_mse']):.3g} training MSE (median). "
              f"Weights: variance ratio {np.mean(sm['variance_ratio']):.3g} (small) vs "
              f"{np.mean(lm['variance_ratio']):.3g} (large); kurtosis change {np.mean(sm['kurtosis_change']):.3g} "
              f"vs {np.mean(lm['kurtosis_change']):.3g}; effective-rank change of the largest matrix per row "
              f"{np.mean(rank_small):.3g} vs {np.mean(rank_large):.3g}.")
    conv = lambda d: {k: np.asarray(v).tolist() for k, v in d.items()}
    return {"question": "at a fixed parameter budget: an ensemble of small nets or one larger net?",
            "n_params": r["n_params"], "ensemble_train_mse": r["ensemble_train_mse"].tolist(),
            "ensemble_grid_mse": e.tolist(), "large_train_mse": r["large_train_mse"].tolist(),
            "large_grid_mse": s.tolist(), "member_train_mse": r["member_train_mse"].tolist(),
            "small_metrics": conv(sm), "large_metrics": conv(lm), "verdict": v, "verdict_reason": reason}


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
    s = r["summary"]
    write_json(out / "summary.json", s)
    (out / "summary.md").write_text("\n".join([
        "# An ensemble of small nets or one larger net?", "", f"**Verdict: {s['verdict']}.** {s['verdict_reason']}",
        "", "![ensembles vs single](fig_ensembles_vs_single.png)", ""]))
    return paths


if __name__ == "__main__":
    from mlpsim.cli import main
    raise SystemExit(main(["study", "ensembles", *__import__("sys").argv[1:]]))
