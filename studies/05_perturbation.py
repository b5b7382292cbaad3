"""Study 05: does adversarially changing a few weights change what the network computes?

Question (the seed notebook's observation 11): "adversarially changing a few
weights won't affect results, usually". For each instance, exactly:

* effect vs. k for random edits (k weights, each moved uniformly within the
  budget) and for greedy adversarial edits, for three budgets (0.1, 0.5, 1 times
  the layer's weight std);
* the worst single edit at four checkpoints (untrained, early, mid, trained);
* the critical-weight table: the exhaustive single-weight search, with layer,
  |w|, |gradient| and the Hessian diagonal, how well first- and second-order
  predictions rank the weights (Spearman correlation), and the median ratio of
  predicted to exact loss increase;
* layer re-initialization (to the initial values) at the same checkpoints;
* recovery: after the worst single edit and after a random 3-weight edit at
  the end of training, 1000 more Adam steps (fresh optimizer state) for the
  edited and the unedited network.

"Affected" follows :class:`mlpsim.perturb.AffectedRule` (flips on > 1 % of a
2001-point grid on [-3.5, 3.5], or the training MSE at least doubles).
``summary.json`` holds ``single_weight_worst`` (per instance, the worst single
edit at the final checkpoint under the default budget, 1 x layer std) and
``verdict`` / ``verdict_reason``: ``supported`` when the worst single edit
under the smallest budget leaves most instances unaffected *and* random edits
of up to 3 weights under the default budget leave the result unaffected in
most draws; ``contradicted`` when even the worst single edit under the smallest
budget affects most instances; ``inconclusive`` otherwise.

Runtime: about a minute on the seed run (5 instances, 169 parameters); the
wider network (``wide`` preset) is searched on 2 instances and a seeded subset
of 400 parameters.
Run: ``mlpsim study perturbation --out out/perturbation``.
"""
import numpy as np

from mlpsim import perturb, plots
from mlpsim.study import obtain_run, save_data, write_json

NAME = "05_perturbation"
DEFAULT_PRESETS = ("seed", "wide")
BUDGET_SCALES = (0.1, 0.5, 1.0)
DEFAULT_BUDGET = perturb.Budget("layer_std", 1.0)
K_RANDOM = (1, 2, 3, 5, 10)
K_GREEDY = 3
RULE = perturb.AffectedRule()


def run(config, run_dir, progress=None, log=print) -> dict:
    return analyse(obtain_run(config, run_dir, progress=progress, log=log))


def _spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def analyse(run, seed=0, n_random=200, max_instances=None, max_candidates=None, recovery_steps=1000) -> dict:
    net, P = run.net, run.params
    E, C, _ = P.shape
    big = net.n_params > 1000
    max_instances = max_instances or (2 if big else E)
    max_candidates = max_candidates or (400 if big else None)
    x, y = run.data()
    steps = np.asarray(run.steps)
    picks = np.unique([0, C // 10, C // 2, C - 1])
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    candidates = None
    if max_candidates and max_candidates < net.n_params:
        candidates = np.sort(rng.choice(net.indices()[net.free == 1], max_candidates, replace=False))
    r = {"run": run, "steps": steps, "picks": picks, "instances": min(E, max_instances),
         "candidates": candidates, "budget_scales": BUDGET_SCALES}
    per = []
    for e in range(r["instances"]):
        theta = np.asarray(P[e, -1], dtype=np.float64)
        ev = perturb.Evaluator(net, theta, x, y)
        out = {"random": {}, "greedy": {}}
        for scale in BUDGET_SCALES:
            b = perturb.Budget("layer_std", scale)
            out["random"][scale] = {k: ev.random_edits(b, k, n_random, seed=seed + 1000 * e + k)
                                    for k in K_RANDOM if k <= net.free.sum()}
            out["greedy"][scale] = _greedy(ev, b, K_GREEDY, candidates)
        table = ev.exhaustive_single(DEFAULT_BUDGET, candidates=candidates)
        pred = perturb.predicted_effects(net, theta, x, y, DEFAULT_BUDGET,
                                         H=None if not big else np.full((net.n_params, net.n_params), np.nan))
        j = int(np.argmax(table["train_mse"]))
        out["table"] = table
        out["worst"] = {"index": int(table["index"][j]), "value": float(table["value"][j]),
                        "train_mse": float(table["train_mse"][j]),
                        "layer": int(_layer_of(net, table["index"][j])), "old_value": float(theta[table["index"][j]])}
        idx = table["index"]
        exact = table["train_mse"] - ev.base_mse  # the exact loss increase of each worst edit
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio1 = pred["first_order"][idx] / exact
            ratio2 = pred["second_order"][idx] / exact
        out["heuristics"] = {"first_order_spearman": _spearman(pred["first_order"][idx], table["train_mse"]),
                             "first_order_median_ratio": float(np.nanmedian(ratio1[exact > 0])),
                             "second_order_median_ratio": (None if big else float(np.nanmedian(ratio2[exact > 0]))),
                             "second_order_spearman": (None if big else
                                                       _spearman(pred["second_order"][idx], table["train_mse"])),
                             "gradient": pred["gradient"][idx], "hessian_diag": pred["hessian_diag"][idx]}
        # over training: the worst single edit and layer re-initialization at each picked checkpoint
        over = {"worst_mse_ratio": [], "worst_affected": [], "reinit_mse_ratio": [], "reinit_flip": []}
        for c in picks:
            th_c = np.asarray(P[e, c], dtype=np.float64)
            ev_c = perturb.Evaluator(net, th_c, x, y)
            t_c = ev_c.exhaustive_single(DEFAULT_BUDGET, n_values=32, candidates=candidates)
            jj = int(np.argmax(t_c["train_mse"]))
            over["worst_mse_ratio"].append(float(t_c["mse_ratio"][jj]))
            over["worst_affected"].append(bool(RULE({k: v[jj:jj + 1] for k, v in t_c.items()})[0]))
            reset = np.stack([perturb.reinitialize_layer(net, th_c, l, initial=np.asarray(P[e, 0]))
                              for l in range(net.n_layers)])
            full_idx = np.tile(np.arange(net.n_params), (net.n_layers, 1))
            eff = ev_c.effects(full_idx, reset)
            over["reinit_mse_ratio"].append(eff["mse_ratio"])
            over["reinit_flip"].append(eff["flip_fraction"])
        out["over_training"] = {k: np.array(v) for k, v in over.items()}
        # recovery under continued training
        worst_edit = perturb.edit(net, theta, [out["worst"]["index"]], "set", out["worst"]["value"])
        rnd = out["random"][1.0][3]
        ridx, rvals = rnd["idx"][0], rnd["vals"][0]
        random_edit = theta.copy()
        random_edit[ridx] = rvals
        out["recovery"] = {name: perturb.continue_training(net, run.config.train, x, y, edited, theta,
                                                           recovery_steps)
                           for name, edited in (("worst single", worst_edit), ("random 3", random_edit))}
        per.append(out)
    r["per_instance"] = per
    r["summary"] = verdict(r)
    return r


def _greedy(ev, budget, k, candidates):
    if candidates is None:
        return ev.greedy(budget, k, n_values=32)
    chosen, values, effects = [], [], []
    base = ev.theta.copy()
    for _ in range(k):
        remaining = np.setdiff1d(candidates, chosen)
        t = ev.exhaustive_single(budget, n_values=32, candidates=remaining, base=base)
        j = int(np.argmax(t["train_mse"]))
        chosen.append(int(t["index"][j]))
        values.append(float(t["value"][j]))
        base[chosen[-1]] = values[-1]
        effects.append({key: float(v[j]) for key, v in t.items() if key not in ("index", "value", "delta")})
    return {"indices": chosen, "values": values, "effects": effects}


def _layer_of(net, p):
    return next(e.layer for e in net.layout if e.offset <= p < e.offset + e.size)


def _affected_share_random(per, scale, k):
    shares = [float(np.mean(RULE(o["random"][scale][k]))) for o in per if k in o["random"][scale]]
    return float(np.mean(shares)) if shares else None


def _affected_greedy(per, scale, k):
    return [bool(RULE({m: np.array([o["greedy"][scale]["effects"][k - 1][m]])
                       for m in ("flip_fraction", "mse_ratio")})[0]) for o in per]


def verdict(r) -> dict:
    per = r["per_instance"]
    E = len(per)
    small, default = BUDGET_SCALES[0], DEFAULT_BUDGET.eps
    adv_small = _affected_greedy(per, small, 1)
    adv_default = _affected_greedy(per, default, 1)
    rand_default = {k: _affected_share_random(per, default, k) for k in K_RANDOM}
    rand_small = {k: _affected_share_random(per, small, k) for k in K_RANDOM}
    random_ok = all(v is not None and v < 0.5 for k, v in rand_default.items() if k <= 3)
    if sum(adv_small) * 2 < E and random_ok:
        v = "supported"
    elif sum(adv_small) * 2 > E:
        v = "contradicted"
    else:
        v = "inconclusive"
    rec = {name: [o["recovery"][name]["recovery_step"] for o in per] for name in ("worst single", "random 3")}
    reason = (
        f"The worst single edit affects the result in {sum(adv_small)}/{E} instances at a budget of "
        f"{small} x layer std and in {sum(adv_default)}/{E} at {default} x (worst training MSE ratio "
        f"{np.median([o['greedy'][default]['effects'][0]['mse_ratio'] for o in per]):.3g}, median over instances). "
        f"Random edits affect it in " + ", ".join(f"k={k}: {100 * s:.0f}%" for k, s in rand_default.items() if s is not None)
        + f" of draws at {default} x, and " + ", ".join(f"k={k}: {100 * s:.0f}%" for k, s in rand_small.items()
                                                      if s is not None) + f" at {small} x. "
        f"After 1000 more Adam steps the loss is back within 10% of the unedited continuation at steps "
        f"{rec['worst single']} (worst single edit) and {rec['random 3']} (random 3-weight edit; None = not within 1000).")
    return {"claim": "adversarially changing a few weights won't affect results, usually",
            "run_dir": str(r["run"].path), "widths": list(r["run"].net.widths), "instances": E,
            "rule": {"flip_fraction": RULE.flip_fraction, "mse_ratio": RULE.mse_ratio},
            "default_budget": {"kind": DEFAULT_BUDGET.kind, "eps": DEFAULT_BUDGET.eps},
            "single_weight_worst": [o["worst"] for o in per],
            "adversarial_k1_affected": {str(s): _affected_greedy(per, s, 1) for s in BUDGET_SCALES},
            "adversarial_affected_by_k": {str(s): [_affected_greedy(per, s, k) for k in range(1, K_GREEDY + 1)]
                                          for s in BUDGET_SCALES},
            "random_affected_share": {str(s): {k: _affected_share_random(per, s, k) for k in K_RANDOM}
                                      for s in BUDGET_SCALES},
            "heuristic_spearman": [{k: v for k, v in o["heuristics"].items() if k.endswith("spearman")} for o in per],
            "heuristic_prediction_over_exact": [{k: v for k, v in o["heuristics"].items() if k.endswith("ratio")}
                                                for o in per],
            "worst_mse_ratio_over_training": {"steps": r["steps"][r["picks"]],
                                              "by_instance": [o["over_training"]["worst_mse_ratio"] for o in per]},
            "recovery_step": rec,
            "verdict": v, "verdict_reason": reason}


def plot(results, out) -> list:
    r = results
    per = r["per_instance"]
    paths = []
    fig, axes = plots.plt.subplots(1, len(BUDGET_SCALES), figsize=(5 * len(BUDGET_SCALES), 4.2), sharey=True)
    data = {}
    for ax, s in zip(axes, BUDGET_SCALES):
        ks = [k for k in K_RANDOM if k in per[0]["random"][s]]
        med = np.array([[np.median(o["random"][s][k]["mse_ratio"]) for k in ks] for o in per])
        q90 = np.array([[np.quantile(o["random"][s][k]["mse_ratio"], 0.9) for k in ks] for o in per])
        adv = np.array([[e["mse_ratio"] for e in o["greedy"][s]["effects"]] for o in per])
        plots.band(ax, ks, med.mean(0), med.min(0), med.max(0), "random: median")
        plots.band(ax, ks, q90.mean(0), q90.min(0), q90.max(0), "random: 90th percentile")
        plots.band(ax, np.arange(1, adv.shape[1] + 1), adv.mean(0), adv.min(0), adv.max(0), "greedy adversarial")
        ax.axhline(RULE.mse_ratio, color="k", ls="--", lw=0.8, label="'affected' threshold")
        ax.set_yscale("log")
        ax.set_xlabel("k (weights edited)")
        ax.set_title(f"budget {s} x layer std", fontsize=10)
        data.update({f"b{s}_random_median": med, f"b{s}_random_q90": q90, f"b{s}_greedy": adv})
    axes[0].set_ylabel("training MSE / unedited (band: instances)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    paths += plots.save(fig, out, "fig_effect_vs_k")
    save_data(out, "fig_effect_vs_k", k_random=np.array(K_RANDOM), **data)

    steps = r["steps"][r["picks"]]
    fig, (a, b) = plots.plt.subplots(1, 2, figsize=(12, 4.2))
    worst = np.array([o["over_training"]["worst_mse_ratio"] for o in per])
    for e, w in enumerate(worst):
        a.semilogy(steps, w, "o-", label=f"instance {e + 1}")
    a.set_xlabel("training step")
    a.set_ylabel("worst single edit: MSE ratio")
    a.set_title(f"fragility over training (budget {DEFAULT_BUDGET.eps} x layer std)")
    a.legend(fontsize=7)
    reinit = np.array([o["over_training"]["reinit_mse_ratio"] for o in per])  # (E, picks, L)
    for l in range(reinit.shape[2]):
        s = reinit[:, :, l]
        plots.band(b, steps, np.median(s, 0), s.min(0), s.max(0), f"layer {l + 1}")
    b.set_yscale("log")
    b.set_xlabel("training step")
    b.set_ylabel("MSE ratio after resetting the layer to its init")
    b.set_title("layer re-initialization robustness")
    b.legend(fontsize=7)
    fig.tight_layout()
    paths += plots.save(fig, out, "fig_over_training")
    save_data(out, "fig_over_training", steps=steps, worst_mse_ratio=worst, reinit_mse_ratio=reinit,
              reinit_flip=np.array([o["over_training"]["reinit_flip"] for o in per]))

    o = per[0]
    t = o["table"]
    net = r["run"].net
    theta = np.asarray(r["run"].params[0, -1])
    layers = np.array([_layer_of(net, p) for p in t["index"]])
    fig, axes = plots.plt.subplots(1, 3, figsize=(16, 4.4))
    has_hessian = bool(np.any(np.isfinite(o["heuristics"]["hessian_diag"])))
    for l in range(net.n_layers):
        m = layers == l
        axes[0].scatter(np.abs(theta[t["index"][m]]), t["mse_ratio"][m], s=10, label=f"layer {l + 1}")
        axes[1].scatter(np.abs(o["heuristics"]["gradient"][m]) + 1e-16, t["mse_ratio"][m], s=10)
        if has_hessian:
            axes[2].scatter(np.abs(o["heuristics"]["hessian_diag"][m]) + 1e-16, t["mse_ratio"][m], s=10)
    for ax, label in zip(axes if has_hessian else axes[:2], ["|w|", "|gradient|", "|Hessian diagonal|"]):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("worst single edit: MSE ratio")
    if not has_hessian:
        axes[2].text(0.5, 0.5, "exact Hessian not computed\n(too many parameters)", ha="center", va="center",
                     transform=axes[2].transAxes)
        axes[2].set_axis_off()
    axes[0].legend(fontsize=7)
    axes[0].set_title("critical weights (instance 1, trained)")
    h = o["heuristics"]
    axes[1].set_title(f"first-order ranking: Spearman {h['first_order_spearman']:.2f}")
    so = h["second_order_spearman"]
    axes[2].set_title("second order: " + (f"Spearman {so:.2f}" if so is not None else "not computed (wide net)"))
    fig.tight_layout()
    paths += plots.save(fig, out, "fig_critical_weights")
    save_data(out, "fig_critical_weights", index=t["index"], mse_ratio=t["mse_ratio"], value=t["value"],
              layer=layers, weight=theta[t["index"]], gradient=h["gradient"], hessian_diag=h["hessian_diag"])

    fig, axes = plots.plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, name in zip(axes, ("worst single", "random 3")):
        for e, o in enumerate(per):
            rec = o["recovery"][name]
            line, = ax.loglog(np.arange(1, rec["loss_edited"].size + 1), rec["loss_edited"], lw=1,
                              label=f"instance {e + 1} edited")
            ax.loglog(np.arange(1, rec["loss_unedited"].size + 1), rec["loss_unedited"], ":",
                      color=line.get_color(), lw=1)
        ax.set_xlabel("steps after the edit (+1)")
        ax.set_title(f"recovery after the {name} edit (dotted: unedited)", fontsize=10)
    axes[0].set_ylabel("training MSE")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    paths += plots.save(fig, out, "fig_recovery")
    save_data(out, "fig_recovery", **{f"{name.replace(' ', '_')}_{e}_{key}": o["recovery"][name][key]
                                      for e, o in enumerate(per) for name in ("worst single", "random 3")
                                      for key in ("loss_edited", "loss_unedited")})
    write_summary(r["summary"], out)
    return paths


def write_summary(summary, out):
    write_json(out / "summary.json", summary)
    s = summary
    lines = ["# Does editing a few weights change what the network computes?", "",
             f"Network {s['widths']}, {s['instances']} instances; run `{s['run_dir']}`. 'Affected': flips on more "
             f"than {100 * s['rule']['flip_fraction']:.0f}% of the grid or training MSE x{s['rule']['mse_ratio']:g}.", "",
             f"**Verdict: {s['verdict']}.** {s['verdict_reason']}", "",
             "| instance | worst single edit (default budget) | layer | old -> new value | training MSE after |",
             "| --- | --- | --- | --- | --- |"]
    for e, w in enumerate(s["single_weight_worst"]):
        lines.append(f"| {e + 1} | parameter {w['index']} | {w['layer'] + 1} | {w['old_value']:.3g} -> "
                     f"{w['value']:.3g} | {w['train_mse']:.3g} |")
    lines.append("")
    for name in ("fig_effect_vs_k", "fig_over_training", "fig_critical_weights", "fig_recovery"):
        lines += [f"![{name}]({name}.png)", ""]
    (out / "summary.md").write_text("\n".join(lines))


if __name__ == "__main__":
    from mlpsim.cli import main
    raise SystemExit(main(["study", "perturbation", *__import__("sys").argv[1:]]))
