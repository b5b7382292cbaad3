"""Study 08: which findings are generic, and which depend on the target?

Question (the seed notebook's investigation 10): how do the results change if
one changes the target function? Every named target (``mlpsim.data.TARGETS``;
seed network 1-8-8-8-1, or 2-8-8-8-1 for 2-D inputs; 3 instances, 15000 Adam
steps on 2000 points) is trained and checked for three findings of the
earlier studies:

* broadening: variance ratio final/initial > 1 (study 02);
* rank loss: the effective rank of the largest weight matrix falls (study 03);
* fragility: the worst single-weight edit within 1 x layer std affects the
  result (study 05's rule: flips on > 1 % of the grid or training MSE x2).

A finding is *generic here* when it holds in every instance for every target.
With 3 instances per target this is descriptive, not a verdict of
:mod:`mlpsim.claims`; ``mlpsim atlas`` judges the claims over targets and
every other factor, with tests.

Runtime: about 2 minutes on 2 cores (``--scale`` multiplies steps).
Run: ``mlpsim study targets --out out/targets``.
"""
import numpy as np

from mlpsim import analysis, perturb, plots
from mlpsim.config import preset
from mlpsim.data import TARGETS
from mlpsim.study import save_data, scaled

NAME = "08_targets"
FINDINGS = ("broadening", "rank_loss", "fragility")


def config(target, steps=15000):
    d_in = 2 if TARGETS[target].d_in == 2 else 1
    return preset("seed").with_values({"data.target": target, "model.widths": [d_in, 8, 8, 8, 1], "data.n": 2000,
                                       "train.steps": steps, "train.checkpoint_every": max(1, steps // 20),
                                       "train.instances": 3})


def configs(scale=1.0, targets=tuple(TARGETS)) -> dict:
    return {t: scaled(config(t), scale) for t in targets}


def fragility(run) -> np.ndarray:
    """Per instance: the training-MSE ratio of the worst single edit (1 x layer std)."""
    x, y = run.data()
    grid = None if run.net.widths[0] == 1 else x[:2001]
    out = []
    for e in range(run.params.shape[0]):
        ev = perturb.Evaluator(run.net, np.asarray(run.params[e, -1]), x, y, grid=grid)
        t = ev.exhaustive_single(perturb.Budget("layer_std", 1.0), n_values=16, n_refine=4)
        j = int(np.argmax(t["train_mse"]))
        rule = perturb.AffectedRule()
        out.append((float(t["mse_ratio"][j]), bool(rule({k: v[j:j + 1] for k, v in t.items()})[0])))
    return out


def analyse(runs) -> dict:
    per = {}
    for t, run in runs.items():
        m = analysis.run_metrics(run)
        frag = fragility(run)
        per[t] = {**{k: v for k, v in m.items()},
                  "worst_edit_mse_ratio": np.array([f[0] for f in frag]),
                  "findings": {"broadening": bool(np.all(m["variance_ratio"] > 1)),
                               "rank_loss": bool(np.all(m["effective_rank_change"] < 0)),
                               "fragility": bool(all(f[1] for f in frag))}}
    return {"per_target": per, "runs": list(runs.values())}


def notes(results) -> list:
    per = results["per_target"]
    lines = []
    for f in FINDINGS:
        fails = [t for t, p in per.items() if not p["findings"][f]]
        lines.append(f"{f}: " + ("holds in every instance of every target" if not fails else
                                 f"fails for {', '.join(fails)}") + f" ({len(per)} targets, 3 instances each).")
    lines.append("Per target (broadening / rank loss / fragility): " + "; ".join(
        f"{t} " + "/".join("yes" if p["findings"][f] else "no" for f in FINDINGS) for t, p in per.items()) + ".")
    return lines


def plot(results, out) -> list:
    per = results["per_target"]
    names = list(per)
    metrics = ("variance_ratio", "effective_rank_change", "worst_edit_mse_ratio", "final_loss")
    fig, axes = plots.plt.subplots(1, len(metrics), figsize=(4.4 * len(metrics), 4.6))
    data = {}
    for ax, m in zip(axes, metrics):
        vals = np.array([per[t][m] for t in names])
        for i, row in enumerate(vals):
            ax.plot([i] * len(row), row, "o", ms=4, alpha=0.7, color="tab:blue")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
        if m in ("variance_ratio", "worst_edit_mse_ratio", "final_loss"):
            ax.set_yscale("log")
        ax.axhline(1.0 if m in ("variance_ratio",) else 2.0 if m == "worst_edit_mse_ratio" else 0.0,
                   color="k", ls="--", lw=0.8)
        ax.set_title(m.replace("_", " "), fontsize=10)
        data[m] = vals
    fig.suptitle("Findings across targets (dots: instances; dashed: where the finding flips)")
    fig.tight_layout()
    paths = plots.save(fig, out, "fig_targets")
    save_data(out, "fig_targets", targets=np.array(names), **data)
    return paths
