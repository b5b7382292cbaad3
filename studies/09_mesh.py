"""Study 09: grid ("mesh") networks — can one visually see training?

Question (the seed notebook's investigation 9): take networks whose neurons
connect only to their neighbours in the previous layer (``mlpsim.mesh``); can
one see training in pictures of the weights, and where does change
concentrate?

Figures:
  fig_mesh_frames        the network drawn as a grid (connections colored by
                         weight, neurons by bias) at six checkpoints
  fig_mesh_change        the same for the change since initialization
  mesh_training.gif      an animation over training
  fig_mesh_activations   every hidden neuron's activation over the input range,
                         at initialization and after training
  fig_mesh_where         distance from initialization per layer and per
                         position, the fraction of weights that moved by more than
                         10 % of their layer's initial std, next to the loss

Findings (descriptive): the share of weights that moved, the layer and
position that changed most, and whether the change is visible by the numbers
(more than half of the weights moved by more than the threshold).

Runtime: under a minute (the ``mesh`` preset: 3 instances of
1-8x6-1 with k = 3, 5000 Adam steps), plus a few seconds for the GIF.
Run: ``mlpsim study mesh --out out/mesh``.
"""
import numpy as np

from mlpsim import analysis, plots
from mlpsim.config import preset
from mlpsim.study import primary, save_data, scaled

NAME = "09_mesh"
MOVE_THRESHOLD = 0.1  # in units of the layer's initial weight std


def configs(scale=1.0) -> dict:
    return {"mesh": scaled(preset("mesh"), scale)}


def analyse(runs) -> dict:
    run = primary(runs)
    net, P = run.net, run.params
    E, C, _ = P.shape
    steps = np.asarray(run.steps)
    p0 = np.asarray(P[0], dtype=np.float64)  # instance 1's trajectory (mesh nets are small)
    free = net.free.astype(bool)
    moved = np.empty((E, C))
    # NaN where a layer has no neuron at that position (the output layer is narrower)
    per_position = np.full((E, C, net.n_layers, max(net.widths[1:])), np.nan)
    for e in range(E):
        traj = np.asarray(P[e], dtype=np.float64)
        d = traj - traj[:1]
        thresh = np.empty(net.n_params)
        for l in range(net.n_layers):
            W0 = net.view(traj[0], f"W{l + 1}")
            live = W0[W0 != 0]
            thresh[net.indices(layer=l + 1)] = MOVE_THRESHOLD * (live.std() if live.size > 1 else 1.0)
        w_idx = net.indices(kind="weight")
        w_idx = w_idx[free[w_idx]]
        moved[e] = (np.abs(d[:, w_idx]) > thresh[w_idx]).mean(axis=1)
        for l in range(net.n_layers):
            dW = net.view(d, f"W{l + 1}")   # (C, out, in): change of the weights into each neuron
            per_position[e, :, l, :dW.shape[1]] = np.sqrt((dW ** 2).sum(axis=-1))
    dist = analysis.distance_from_init(P, net)
    frames = analysis.pick_checkpoints(C, 6)
    gif_frames = analysis.pick_checkpoints(C, 25)
    grid = np.linspace(*run.config.data.x_range, 200)[:, None] if net.widths[0] == 1 else None
    acts = None
    if grid is not None:
        acts = {"initial": analysis.hidden_activations(net, p0[0], grid),
                "trained": analysis.hidden_activations(net, p0[-1], grid)}
    r = {"run": run, "steps": steps, "moved": moved, "per_position": per_position, "distance": dist,
         "frames": frames, "gif_frames": gif_frames, "trajectory0": p0, "grid": grid, "activations": acts,
         "loss": np.asarray(run.loss)}
    r["summary"] = summarize(r)
    return r


def notes(results) -> list:
    s = results["summary"]
    return [f"Network {s['widths']}, mesh k = {s['mesh_k']}, wrap = {s['mesh_wrap']}. "
            + ("Training is visible. " if s["visible"] else "Training is hardly visible. ") + s["reason"]]


def summarize(r) -> dict:
    net = r["run"].net
    final = r["per_position"][:, -1]  # (E, L, w)
    layer_change = r["distance"]["per_layer"][:, -1]  # (E, L)
    top_layer = int(np.argmax(layer_change.mean(axis=0)))
    hidden = final[:, 1:-1, :] if net.n_layers > 2 else final
    top_position = int(np.nanargmax(np.nanmean(hidden, axis=(0, 1)))) + 1  # positions from 1, as layers
    share = r["moved"][:, -1]
    visible = bool(np.mean(share) > 0.5)
    return {"question": "can one visually see training in a mesh network?",
            "run_dir": str(r["run"].path), "widths": list(net.widths), "mesh_k": r["run"].config.model.mesh_k,
            "mesh_wrap": r["run"].config.model.mesh_wrap,
            "share_of_weights_moved": share, "move_threshold_in_initial_std": MOVE_THRESHOLD,
            "distance_per_layer_final": layer_change, "layer_with_most_change": top_layer + 1,
            "hidden_position_with_most_change": top_position,
            "final_loss": r["loss"][:, -1],
            "visible": visible,
            "reason": (f"{100 * np.mean(share):.0f}% of the weights (mean over instances) moved by more than "
                               f"{MOVE_THRESHOLD} of their layer's initial std; layer {top_layer + 1} (W{top_layer + 1}) changed most, "
                               f"and among hidden neurons position {top_position}. "
                               + ("Training is visible in the pictures." if visible else
                                  "Most weights barely move: the pictures change little."))}


def plot(results, out) -> list:
    r = results
    net = r["run"].net
    steps, p0 = r["steps"], r["trajectory0"]
    paths = []
    vmax = float(np.max(np.abs(p0)))
    n = len(r["frames"])
    fig, axes = plots.plt.subplots(1, n, figsize=(3.3 * n, 3.6))
    for ax, c in zip(np.atleast_1d(axes), r["frames"]):
        lc = plots.draw_network(ax, net, p0[c], title=f"step {int(steps[c])}", vmax=vmax)
    fig.colorbar(lc, ax=axes, label="weight (neurons: bias)", shrink=0.8)
    paths += plots.save(fig, out, "fig_mesh_frames")
    change = p0 - p0[:1]
    cmax = float(np.max(np.abs(change))) or 1.0
    fig, axes = plots.plt.subplots(1, n, figsize=(3.3 * n, 3.6))
    for ax, c in zip(np.atleast_1d(axes), r["frames"]):
        lc = plots.draw_network(ax, net, change[c], title=f"change, step {int(steps[c])}", vmax=cmax)
    fig.colorbar(lc, ax=axes, label="change since initialization", shrink=0.8)
    paths += plots.save(fig, out, "fig_mesh_change")
    save_data(out, "fig_mesh_frames", steps=steps[r["frames"]], params=p0[r["frames"]])
    gif = plots.animate_networks(net, p0[r["gif_frames"]],
                                 [f"instance 1, step {int(steps[c])}, training MSE {r['loss'][0, c]:.3g}"
                                  for c in r["gif_frames"]], out / "mesh_training.gif", vmax=vmax)
    paths.append(gif)

    if r["activations"] is not None:
        L = len(r["activations"]["initial"])
        fig, axes = plots.plt.subplots(2, L, figsize=(2.6 * L, 5), sharex=True, squeeze=False)
        for row, key in enumerate(("initial", "trained")):
            for l, A in enumerate(r["activations"][key]):
                axes[row, l].plot(r["grid"][:, 0], A, lw=0.9)
                axes[row, l].set_title(f"{key}: hidden layer {l + 1}", fontsize=8)
        for ax in axes[-1]:
            ax.set_xlabel("input x")
        fig.tight_layout()
        paths += plots.save(fig, out, "fig_mesh_activations")
        save_data(out, "fig_mesh_activations", x=r["grid"][:, 0],
                  **{f"{key}_layer{l + 1}": A for key in ("initial", "trained")
                     for l, A in enumerate(r["activations"][key])})

    fig, axes = plots.plt.subplots(1, 3, figsize=(16, 4.4))
    where = np.ma.masked_invalid(r["per_position"][:, -1].mean(axis=0).T)  # no neuron there: left blank
    im = axes[0].imshow(where, origin="lower", aspect="auto", cmap="viridis")
    axes[0].set_xlabel("layer (weights into it)")
    axes[0].set_ylabel("neuron position (from 1; blank: no neuron)")
    axes[0].set_yticks(range(where.shape[0]))
    axes[0].set_yticklabels([str(p + 1) for p in range(where.shape[0])])
    axes[0].set_xticks(range(net.n_layers))
    axes[0].set_xticklabels([f"W{l + 1}" for l in range(net.n_layers)])
    axes[0].set_title("where change concentrates (end of training)")
    fig.colorbar(im, ax=axes[0], label="||change of incoming weights||")
    d = r["distance"]["per_layer"]
    for l in range(net.n_layers):
        s = analysis.ensemble_stats(d[:, :, l])
        plots.band(axes[1], steps, s["mean"], s["min"], s["max"], f"W{l + 1}")
    axes[1].set_xlabel("training step")
    axes[1].set_ylabel("||θ_t - θ_0|| of the layer")
    axes[1].legend(fontsize=7)
    ax2 = axes[2]
    s = analysis.ensemble_stats(r["moved"])
    plots.band(ax2, steps, s["mean"], s["min"], s["max"], "share of weights moved")
    ax2.set_xlabel("training step")
    ax2.set_ylabel(f"share moved > {MOVE_THRESHOLD} x initial std")
    twin = ax2.twinx()
    twin.semilogy(steps, r["loss"].T, color="gray", lw=0.8, alpha=0.7)
    twin.set_ylabel("training MSE (gray)")
    ax2.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    paths += plots.save(fig, out, "fig_mesh_where")
    save_data(out, "fig_mesh_where", steps=steps, per_position=r["per_position"], distance_per_layer=d,
              moved=r["moved"], loss=r["loss"])
    return paths
