"""Study 01: the seed notebook's figures, reproduced.

Question: what do the notebook's plots of the weight distribution over training
look like for our reproduction (5 ReLU MLPs 1-8-8-8-1, 15000 full-batch Adam
steps on the piecewise target, every 10th checkpoint)?

Figures (instance 1 unless said):
  fig1_histograms   histograms of all 169 values at every 100th checkpoint
  fig2_density      BinCounts[#, {-5, 5, .25}] vs. step as a density image (linear, log)
  fig3_surface      the same matrix as a 3-D surface (linear and log height)
  fig4_variance     variance of the 169 values vs. step: instance 1, and all instances
  fig9_loss         loss curves of all instances, log-log

By default it looks at the seed study's float64 run (the notebook's network and
training, with 20 instances so that the verdicts of study 02 have power;
instance 1 is the same network as in a 5-instance run).

Runtime: the seed study trains two runs of 20 instances (about a minute each
on 2 cores, reused when already trained), then about 10 s for these figures.
Run: ``mlpsim study seed --out out/seed`` (with study 02).
"""
import numpy as np

from mlpsim import analysis, plots
from mlpsim.config import preset
from mlpsim.study import VERDICT_INSTANCES, primary, save_data, scaled

NAME = "01_seed_notebook"


def configs(scale=1.0) -> dict:
    """The seed network and training, with enough instances for verdicts."""
    return {"float64": scaled(preset("seed").with_values({"train.instances": VERDICT_INSTANCES}), scale)}


def analyse(runs) -> dict:
    run = primary(runs)
    net = run.net
    idx = analysis.select(net, "all")
    hist = analysis.histograms(run.params, idx)
    mom = analysis.moments(run.params, idx)
    C = len(run.steps)
    picks = analysis.pick_checkpoints(C, 16)
    return {"run": run, "steps": np.asarray(run.steps), "edges": hist["edges"],
            "counts": hist["counts"], "below": hist["below"], "above": hist["above"],
            "variance": mom["var"], "picks": picks,
            "loss_steps": np.asarray(run.loss_steps)}


def plot(results, out) -> list:
    """Write the figures and the numbers behind them into ``out``."""
    r = results
    steps, edges, counts0 = r["steps"], r["edges"], r["counts"][0]
    E = r["counts"].shape[0]
    paths = []
    title = f"all {r['run'].net.n_params} parameters, instance 1"
    below, above = np.asarray(r["below"][0])[r["picks"]], np.asarray(r["above"][0])[r["picks"]]
    fig = plots.histogram_grid(counts0[r["picks"]], edges, steps[r["picks"]], f"Histograms of {title}",
                               below=below, above=above)
    paths += plots.save(fig, out, "fig1_histograms")
    save_data(out, "fig1_histograms", counts=counts0[r["picks"]], steps=steps[r["picks"]], edges=edges,
              below=below, above=above)

    dropped = int(r["below"][0].sum() + r["above"][0].sum())
    fig = plots.density_pair(counts0, edges, steps,
                             f"Bin counts over training, {title} ({dropped} values outside [-5, 5) over all checkpoints)")
    paths += plots.save(fig, out, "fig2_density")
    save_data(out, "fig2_density", counts=counts0, steps=steps, edges=edges,
              below=r["below"], above=r["above"])

    fig = plots.surface_pair(counts0, edges, steps, f"Bin counts over training, {title}")
    paths += plots.save(fig, out, "fig3_surface")
    save_data(out, "fig3_surface", counts=counts0, steps=steps, edges=edges)

    fig, (a, b) = plots.plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    plots.lines_over_training(a, steps, r["variance"][:1], title="instance 1", ylabel="variance of parameters")
    plots.lines_over_training(b, steps, r["variance"], labels=[f"instance {e + 1}" for e in range(E)],
                              title=f"all {E} instances")
    fig.tight_layout()
    paths += plots.save(fig, out, "fig4_variance")
    save_data(out, "fig4_variance", variance=r["variance"], steps=steps)

    fig, ax = plots.plt.subplots(figsize=(7, 4.5))
    loss = r["loss_steps"]
    s = np.arange(1, loss.shape[1] + 1)
    for e in range(E):
        ax.loglog(s, loss[e], lw=1, label=f"instance {e + 1}")
    ax.set_xlabel("training step")
    ax.set_ylabel("training MSE")
    ax.set_title("Loss curves")
    ax.legend(fontsize=8)
    paths += plots.save(fig, out, "fig9_loss")
    save_data(out, "fig9_loss", loss_steps=loss, step=s - 1)
    return paths
