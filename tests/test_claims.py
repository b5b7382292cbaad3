"""The claims engine on planted data whose answer is known, on null data, and on bad input."""
import json

import numpy as np
import pytest

import mlpsim
from mlpsim import claims, perturb
from mlpsim.cli import main

import planted

NET = mlpsim.MLP([1, 8, 8, 8, 1])
BIG = mlpsim.MLP([1, 16, 16, 1])  # every hidden matrix has >= 16 weights
E = 20


@pytest.fixture(scope="module")
def init():
    return planted.initial(NET, E)


@pytest.fixture(scope="module")
def init_big():
    return planted.initial(BIG, E)


def judge(name, net, init, final, **options):
    return claims.evaluate(name, planted.trajectory(net, init, final), **options)


# ----------------------------------------------------------------- broadening
def test_broadening_on_planted_rescaling(init):
    v = judge("broadening", NET, init, planted.rescaled(NET, init, 2.0))
    assert v.status == "supported"
    assert v.effect == pytest.approx(4.0) and v.ci[0] == pytest.approx(4.0)
    assert v.p_value == pytest.approx(4 * 2 * 0.5 ** 20)  # sign test 20/20, two-sided, Holm over 4 matrices
    assert [r["status"] for r in v.layers] == ["holds"] * 4
    assert v.stability == {"first half": "supported", "second half": "supported"}


def test_broadening_on_shrinking_and_on_weights_that_do_not_move(init):
    assert judge("broadening", NET, init, planted.rescaled(NET, init, 0.5)).status == "contradicted"
    still = judge("broadening", NET, init, init.copy())
    assert still.status == "inconclusive" and still.p_value == 1.0 and still.effect == 1.0


def test_broadening_needs_the_effect_size_too(init):
    """Significant in every instance but only 2 % broader: below the 10 % the claim needs."""
    v = judge("broadening", NET, init, planted.rescaled(NET, init, 1.01))
    assert v.status == "inconclusive"
    assert all(r["p_holm"] < 0.05 and r["status"] == "no evidence" for r in v.layers)


def test_broadening_reports_a_layer_that_goes_the_other_way(init):
    final = planted.rescaled(NET, init, 2.0)
    w1 = NET.indices(layer=1, kind="weight")
    final[:, w1] = init[:, w1] * 0.5
    v = judge("broadening", NET, init, final)
    assert v.status == "supported"
    assert {r["layer"]: r["status"] for r in v.layers}["W1"] == "reversed"
    assert "narrower in W1" in v.reason and "3 of 4" in v.reason


def test_a_verdict_that_flips_between_halves_is_inconclusive(init):
    """Even-numbered instances broaden, odd ones do not move: the pooled sign test (zeros
    dropped) is significant, but the second half says nothing, so the verdict may not stand."""
    final = init.copy()
    final[::2] = planted.rescaled(NET, init[::2], 2.0)
    v = judge("broadening", NET, init, final)
    assert all(r["status"] == "holds" for r in v.layers)  # each matrix alone would hold
    assert v.stability == {"first half": "supported", "second half": "inconclusive"}
    assert v.status == "inconclusive" and "Not stable: the second half gives inconclusive" in v.reason


def test_the_verdict_p_value_counts_only_matrices_that_hold(init):
    """W1 changes hugely significantly but by 1 % only (too small to count); W2 and W3 hold.
    A majority (2 of 3) holds at the larger of W2's and W3's adjusted p-values, not at W1's."""
    net = mlpsim.MLP([1, 8, 8, 8])  # three weight matrices
    base = planted.initial(net, E)
    final = planted.rescaled(net, base, 1.5)
    w1 = net.indices(layer=1, kind="weight")
    final[:, w1] = base[:, w1] * 1.005
    w2, w3 = net.indices(layer=2, kind="weight"), net.indices(layer=3, kind="weight")
    final[:2, w2] = base[:2, w2] * 0.9  # W2 broadens in 18 of 20 instances, W3 in 16
    final[:4, w3] = base[:4, w3] * 0.9
    v = judge("broadening", net, base, final, stability=False)
    rows = {r["layer"]: r for r in v.layers}
    assert rows["W1"]["p_holm"] < rows["W2"]["p_holm"] < rows["W3"]["p_holm"] < 0.05
    assert rows["W1"]["status"] == "no evidence" and v.status == "supported"
    assert v.p_value == rows["W3"]["p_holm"]


def test_too_few_instances_for_a_deep_network_is_said_not_guessed():
    """Depth 6: seven matrices, so each half needs 9 instances for a sign test to pass Holm."""
    net = mlpsim.MLP([1] + [8] * 6 + [1])
    base = planted.initial(net, 16)
    v = judge("broadening", net, base, planted.rescaled(net, base, 2.0))
    assert v.status == "inconclusive" and "cannot pass Holm over this network's 7 tests" in v.reason
    assert "Train at least 18 instances" in v.reason
    base = planted.initial(net, 18)
    assert judge("broadening", net, base, planted.rescaled(net, base, 2.0)).status == "supported"


def test_rank_decrease_needs_both_halves_of_its_intersection_union_test(init):
    """A fall from init that stays inside the shuffled null (sign yes, count no) does not hold;
    neither does a value below the null without a fall from init (count yes, sign no)."""
    rng = np.random.default_rng(8)
    heavy = planted.heavier(NET, init, power=2.0)  # falls from init, but only by the values' spread
    v = judge("rank_decrease", NET, init, heavy)
    assert all(r["status"] != "holds" for r in v.layers)
    pulled = planted.toward_rank_one(NET, init)     # structured: far below the null ...
    v = judge("rank_decrease", NET, pulled, pulled.copy())  # ... but no change from init at all
    assert all(r["status"] != "holds" for r in v.layers) and v.status == "inconclusive"
    del rng


def test_edit_robustness_finds_a_critical_weight_beyond_the_candidate_limit():
    """With almost no fine search (refine=1) the screen at the ends of every weight's budget must
    still find the critical weight."""
    budget = perturb.Budget("absolute", 0.01)
    net, thetas, x, y = planted.redundant_network(E, critical=True)
    v = claims.evaluate("edit_robustness", planted.trajectory(net, thetas, thetas, x, y), budget=budget,
                        refine=1)
    assert v.status == "contradicted" and v.effect == 1.0


# ----------------------------------------------------------------- longer tails
def test_longer_tails_on_planted_shapes(init_big):
    heavy = judge("longer_tails", BIG, init_big, planted.heavier(BIG, init_big))
    assert heavy.status == "supported" and heavy.effect > 1
    light = judge("longer_tails", BIG, init_big, planted.lighter(BIG, init_big))
    assert light.status == "contradicted" and light.effect < 0


def test_longer_tails_is_not_fooled_by_scale(init_big):
    for final in (planted.rescaled(BIG, init_big, 3.0), init_big.copy()):
        v = judge("longer_tails", BIG, init_big, final)
        assert v.status == "inconclusive"


@pytest.mark.slow
def test_longer_tails_rows_keep_their_level_on_null_data():
    """The null is the kurtosis of fresh initializations: on fresh Gaussian 'trained' matrices of
    16 weights (the smallest judged), a row is significant (Holm) at most at the level."""
    net = mlpsim.MLP([1, 4, 4, 1])  # W2 has 16 weights
    rng = np.random.default_rng(11)
    hits = 0
    for rep in range(300):
        base = planted.initial(net, E, seed=5000 + rep)
        v = claims.evaluate("longer_tails", planted.trajectory(net, base, planted.fresh_draws(net, base, rng)),
                            seed=rep, n_null=300, stability=False)
        hits += any(r["p_holm"] < 0.05 for r in v.layers if r["status"] != "not judged")
    assert hits / 300 <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 300)


def test_longer_tails_null_does_not_mix_instance_scales(init_big):
    """Instances initialized at different scales (explicit initial parameters): pooling their
    raw values would make a scale mixture, heavy-tailed by itself; the null standardizes each."""
    scales = np.linspace(1.0, 5.0, E)[:, None]
    init = init_big * scales
    v = claims.evaluate("longer_tails", planted.trajectory(BIG, init, init.copy(), init_scheme=None))
    assert v.status == "inconclusive" and all(r["status"] == "no evidence" for r in v.layers)


def test_longer_tails_does_not_judge_matrices_too_small_to_show_tails(init):
    v = judge("longer_tails", NET, init, planted.heavier(NET, init))
    rows = {r["layer"]: r for r in v.layers}
    assert rows["W1"]["status"] == "not judged" and "cannot exceed 3.1" in rows["W1"]["note"]
    assert rows["W2"]["status"] == "holds" and rows["W3"]["status"] == "holds"
    assert v.status == "supported" and "2 of 2" in v.reason
    assert claims.max_excess_kurtosis(8) == pytest.approx(3.142857, abs=1e-6)
    x = np.zeros(8)
    x[0] = 1.0
    assert claims.excess_kurtosis(x) == pytest.approx(claims.max_excess_kurtosis(8))


# ----------------------------------------------------------------- rank decrease
def test_rank_decrease_on_planted_rank_one_pull(init):
    v = judge("rank_decrease", NET, init, planted.toward_rank_one(NET, init))
    assert v.status == "supported" and v.effect < -0.2
    judged = [r for r in v.layers if r["status"] != "not judged"]
    assert {r["layer"] for r in judged} == {"W2", "W3"} and all(r["status"] == "holds" for r in judged)
    assert "integer (numerical) rank never changes" in v.reason


def test_rank_decrease_rejects_the_same_matrices_shuffled(init):
    """The entries of the rank-one-pulled matrices, shuffled at every checkpoint: same values,
    no structure. The effective rank still falls from init (the values are more spread), but
    not below the shuffled null, so the claim must not be supported."""
    rng = np.random.default_rng(5)
    pulled = planted.toward_rank_one(NET, init)
    v = judge("rank_decrease", NET, planted.shuffled(NET, init, rng), planted.shuffled(NET, pulled, rng))
    assert v.status == "inconclusive"
    assert all(r["status"] == "no evidence" for r in v.layers if r["measure"] == "effective_rank"
               and r["status"] != "not judged")


def test_rank_decrease_is_not_fooled_by_heavier_tailed_values(init):
    """Heavy-tailed entries alone lower the effective rank of a random matrix. The null is a
    shuffle of the *trained* entries, so a change of value distribution is not structure."""
    final = planted.heavier(NET, init, power=2.0)
    v = judge("rank_decrease", NET, init, final)
    assert v.status == "inconclusive"
    assert any(r["measure"] == "effective_rank" and r["effect"] < -0.05 for r in v.layers)  # it did fall


def test_rank_decrease_contradicted_when_rank_grows():
    init = planted.low_rank_initial(NET, E)
    v = judge("rank_decrease", NET, init, planted.fresh_draws(NET, init, np.random.default_rng(2)))
    assert v.status == "contradicted"


def test_rank_decrease_when_no_matrix_can_lose_rank():
    net = mlpsim.MLP([1, 8, 1])
    init = planted.initial(net, E)
    v = judge("rank_decrease", net, init, init * 2)
    assert v.status == "inconclusive" and "cannot lose rank" in v.reason and "0 of 0" in v.reason


# ----------------------------------------------------------------- edit robustness
def test_edit_robustness_on_planted_networks():
    budget = perturb.Budget("absolute", 0.01)
    net, thetas, x, y = planted.redundant_network(E)
    robust = claims.evaluate("edit_robustness", planted.trajectory(net, thetas, thetas, x, y), budget=budget)
    assert robust.status == "supported" and robust.effect == 0.0
    assert net.loss(thetas[0], x, y) < 1e-20
    net, thetas, x, y = planted.redundant_network(E, critical=True)
    fragile = claims.evaluate("edit_robustness", planted.trajectory(net, thetas, thetas, x, y), budget=budget)
    assert fragile.status == "contradicted" and fragile.effect == 1.0
    rows = {r["layer"]: r for r in fragile.layers}
    assert rows["W2"]["status"] == "fragile" and rows["W2"]["instances_affected"] == E
    # the worst edit is exact: moving W2[0, 0] by 0.01 (either way) doubles or zeroes the output
    losses = []
    for step in (0.01, -0.01):
        moved = thetas.copy()
        moved[:, net.entry("W2").offset] += step
        losses.append(net.loss(moved, x, y))
    exact = (np.max(losses, axis=0) - net.loss(thetas, x, y)) / np.var(y)
    assert rows["W2"]["median_r2_loss"] == pytest.approx(np.median(exact), rel=1e-9)


def test_edit_robustness_judge_on_planted_shares():
    """The decision rule alone: shares of affected instances far below, at and above 1/2."""
    claim = claims.get_claim("edit_robustness")

    def status(k, n=20):
        ind = np.r_[np.ones(k), np.zeros(n - k)]
        rows = [claims.Row("W1", "m", ind, ind, ind, indicator=ind),
                claims.Row("all weights", "m", ind, ind, ind, indicator=ind)]
        return claim.judge(rows, claim, 0.05)["status"]
    assert status(0) == "supported" and status(20) == "contradicted"
    assert status(10) == "inconclusive" and status(9) == "inconclusive"
    assert status(4) == "supported" and status(16) == "contradicted"  # binomial p = 0.012 two-sided


# ----------------------------------------------------------------- correlation decay
def _layer_latent_ensemble(E, cov, seed=0, depth=6, width=4, noise=0.3):
    """Aligned ensembles with a planted correlation structure: every 'trained' weight of
    matrix l carries a latent s_l shared by the matrix, and the latents of matrices a and b
    have covariance cov(|a - b|); initial weights carry none. Units have large, distinct
    mean weights, so the Hungarian alignment is the identity."""
    net = mlpsim.MLP([1] + [width] * depth + [1])
    rng = np.random.default_rng(seed)
    w_idx, layer, out_u, in_u = mlpsim.analysis.edge_table(net)
    L = net.n_layers
    K = np.array([[cov(abs(a - b)) for b in range(L)] for a in range(L)])
    latent = rng.multivariate_normal(np.zeros(L), K, size=E)  # (E, L)
    means = np.zeros(net.n_params)
    means[w_idx] = 3.0 * (out_u + 1) + 0.5 * in_u
    init = means + 0.3 * rng.normal(size=(E, net.n_params))
    final = means + np.zeros((E, 1))
    final[:, w_idx] += latent[:, layer] + noise * rng.normal(size=(E, w_idx.size))
    return net, init, final


def test_correlation_decay_end_to_end():
    net, init, final = _layer_latent_ensemble(200, lambda k: (1.0 + k) ** -0.7)
    v = claims.evaluate("correlation_decay", planted.trajectory(net, init, final), stability=False, n_perm=400,
                        n_boot=100)
    assert v.status == "contradicted", v.reason  # a planted power law
    assert "significant at distances 1-6" in v.reason and v.effect > 0.2
    null_final = init + np.random.default_rng(1).normal(size=init.shape)
    null = claims.evaluate("correlation_decay", planted.trajectory(net, init, null_final))
    assert null.status == "inconclusive" and "no correlation" in null.reason


def test_correlation_decay_short_range_is_inconclusive():
    """Correlation only within a matrix (latents independent across matrices): damped within 2 steps."""
    net, init, final = _layer_latent_ensemble(64, lambda k: float(k == 0))
    v = claims.evaluate("correlation_decay", planted.trajectory(net, init, final), n_perm=400, n_boot=50)
    assert v.status == "inconclusive" and "too few distances" in v.reason
    rows = {r["layer"]: r for r in v.layers}
    assert rows["same output unit"]["status"] == "training adds correlation"
    assert rows["2 layer(s) apart"]["status"] != "training adds correlation"


def test_correlation_decay_on_degenerate_networks(tmp_path, capsys):
    """A 1-1-1 network has one pair of weights (in series): inconclusive by design, as any
    network too shallow for a decay law (its sums once wrote a category column it lacked:
    IndexError). A 1-1 network has no pair at all: refused, exit 2."""
    net = mlpsim.MLP([1, 1, 1])
    init = planted.initial(net, E)
    v = claims.evaluate("correlation_decay", planted.trajectory(net, init, 2 * init), n_perm=100, n_boot=20)
    assert v.status == "inconclusive" and "pairs at 1 distance(s) only" in v.reason
    cfg = mlpsim.preset("tiny").with_values({"model.widths": [1, 1], "train.instances": E, "train.steps": 20})
    run = mlpsim.train(cfg, tmp_path / "r", progress=False)
    assert main(["verdict", "correlation_decay", "--run", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlpsim: error: correlation_decay correlates pairs of weights") and "(1-1) has 1 weight" in err


def test_correlation_decay_rule_on_planted_profiles():
    """The decision alone, on distance profiles with known laws and bootstrap noise."""
    claim = claims.get_claim("correlation_decay")
    rng = np.random.default_rng(0)
    d = np.arange(1, 7)

    def status(profile, significant=6):
        rows = [claims.Row(f"distance {k}", "distance", np.array([0.0]), np.array([p]), np.array([p]),
                           np.array([0.001 if k <= significant else 0.5]), np.array([1.0]),
                           boot=p * np.exp(0.1 * rng.normal(size=200)))
                for k, p in zip(d, profile)]
        return claim.judge(rows, claim, 0.05)["status"]
    assert status(0.5 * np.exp(-d / 2.0)) == "supported"
    assert status(0.5 * d ** -1.5) == "contradicted"
    assert status(0.5 * np.exp(-d / 2.0), significant=3) == "inconclusive"


# ----------------------------------------------------------------- the Verdict record and bad input
def test_verdict_record(init):
    v = judge("broadening", NET, init, planted.rescaled(NET, init, 2.0))
    d = v.to_dict()
    json.dumps(d)  # plain JSON
    assert d["claim"] == "broadening" and d["n_instances"] == E and len(d["layers"]) == 4
    assert d["seeds"]["null"] == 0 and d["test"].startswith("exact sign test")
    with pytest.raises(Exception):
        v.status = "supported"  # frozen
    assert "broadening: supported (variance ratio 4" in v.headline()


def test_unknown_claim_lists_the_known_ones(init):
    with pytest.raises(claims.ClaimError, match="allowed: 'broadening', 'longer_tails'.*Did you mean 'broadening'"):
        judge("broadenning", NET, init, init)


def test_too_few_instances_is_inconclusive_with_a_reason(init):
    v = judge("broadening", NET, init[:5], planted.rescaled(NET, init[:5], 2.0))
    assert v.status == "inconclusive" and "needs at least 16" in v.reason and v.layers == ()


def test_bad_trajectories_are_refused(init):
    with pytest.raises(claims.ClaimError, match="NaN"):
        bad = init.copy()
        bad[0, 0] = np.nan
        judge("broadening", NET, init, bad)
    with pytest.raises(claims.ClaimError, match="parameters"):
        claims.Trajectory(NET, init)
    with pytest.raises(claims.ClaimError, match="run directory"):
        claims.evaluate("broadening", "not a run")
    with pytest.raises(claims.ClaimError, match="level"):
        judge("broadening", NET, init, init, level=1.5)


def test_incomplete_and_failed_runs_are_refused(tmp_path):
    cfg = mlpsim.preset("tiny").with_values({"train.optimizer": "gd", "train.lr": 100.0})
    with pytest.raises(mlpsim.TrainingDiverged):
        mlpsim.train(cfg, tmp_path / "failed", progress=False)
    run = mlpsim.load_run(tmp_path / "failed", allow_incomplete=True)
    with pytest.raises(claims.ClaimError, match="failed.*finished runs only"):
        claims.evaluate("broadening", run)


def test_verdict_cli(tmp_path, capsys):
    run = mlpsim.train(mlpsim.preset("tiny").with_values({"train.instances": 16, "train.steps": 60}),
                       tmp_path / "r", progress=False)
    assert main(["verdict", "broadening", "--run", str(run.path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["claim"] == "broadening" and d["n_instances"] == 16 and d["status"] in claims.STATUSES
    # the CLI's verdict is the library's
    assert d == json.loads(json.dumps(claims.evaluate("broadening", run).to_dict()))
    assert main(["verdict", "--list"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in claims.claim_names()) and "null:" in text
    assert main(["verdict", "rank_decrese", "--run", str(run.path)]) == 2
    assert "Did you mean 'rank_decrease'" in capsys.readouterr().err
    assert main(["verdict", "broadening"]) == 2
    assert "--run" in capsys.readouterr().err


# ----------------------------------------------------------------- level and power (slow)
@pytest.mark.slow
@pytest.mark.parametrize("name,net", [("broadening", NET), ("longer_tails", BIG), ("rank_decrease", NET)])
def test_false_supported_rate_on_null_data_is_below_the_level(name, net):
    """Null: the 'trained' matrices are fresh draws from the initial distribution. Over 200
    seeded repetitions, 'supported' (or 'contradicted') must come out at most at the level."""
    rng = np.random.default_rng(12345)
    wrong = 0
    for rep in range(200):
        init = planted.initial(net, E, seed=1000 + rep)
        v = claims.evaluate(name, planted.trajectory(net, init, planted.fresh_draws(net, init, rng)),
                            seed=rep, n_null=200) if name != "broadening" else \
            claims.evaluate(name, planted.trajectory(net, init, planted.fresh_draws(net, init, rng)))
        wrong += v.status != "inconclusive"
    assert wrong / 200 <= 0.05


@pytest.mark.slow
def test_false_verdict_rate_of_the_edit_rule_on_null_shares():
    claim = claims.get_claim("edit_robustness")
    rng = np.random.default_rng(7)
    wrong = 0
    for _ in range(2000):
        ind = (rng.random(20) < 0.5).astype(float)
        rows = [claims.Row("W1", "m", ind, ind, ind, indicator=ind),
                claims.Row("all weights", "m", ind, ind, ind, indicator=ind)]
        wrong += claim.judge(rows, claim, 0.05)["status"] != "inconclusive"
    assert wrong / 2000 <= 0.05


@pytest.mark.slow
def test_false_verdict_rate_of_correlation_decay_on_null_ensembles():
    wrong = 0
    for rep in range(200):
        net, init, _ = _layer_latent_ensemble(24, lambda k: 0.0, seed=rep, depth=5)
        final = init + np.random.default_rng(rep).normal(size=init.shape)
        v = claims.evaluate("correlation_decay", planted.trajectory(net, init, final), seed=rep,
                            stability=False, n_perm=400, n_boot=50)
        wrong += v.status != "inconclusive"
    assert wrong / 200 <= 0.05


@pytest.mark.slow
@pytest.mark.parametrize("name,net,make", [
    ("broadening", NET, lambda net, init, rng: planted.rescaled(net, init, 1.3) + 0.0),
    ("longer_tails", BIG, lambda net, init, rng: planted.heavier(net, init, 0.8)),
    ("rank_decrease", NET, lambda net, init, rng: planted.toward_rank_one(net, init, 1.0)),
])
def test_power_on_moderate_planted_effects(name, net, make):
    """Moderate effects with per-instance noise are found in at least 80 % of 50 repetitions."""
    rng = np.random.default_rng(99)
    found = 0
    for rep in range(50):
        init = planted.initial(net, E, seed=2000 + rep)
        final = make(net, init, rng)
        final = final + 0.05 * final.std() * rng.normal(size=final.shape) * (net.free > 0)
        found += claims.evaluate(name, planted.trajectory(net, init, final), seed=rep).status == "supported"
    assert found / 50 >= 0.8


@pytest.mark.parametrize("widths", [[1, 6, 1], [2, 5, 7, 3, 4, 2], [1, 8, 8, 8, 1]])
def test_pair_group_means_equal_the_pair_by_pair_definition(widths):
    """Both ways of summing r^2 by pair category and distance (the E x E kernels, the
    squared correlation blocks) equal the mean over the labelled pairs of R."""
    net = mlpsim.MLP(widths)
    w_idx, *_ = mlpsim.analysis.edge_table(net)
    rng = np.random.default_rng(len(widths))
    E = 9
    Z = rng.normal(size=(3, E, w_idx.size)) + rng.normal(size=(3, 1, w_idx.size))  # correlated columns
    Z[:, :, 4] = 7.0  # a constant column: left out of every pair
    Z, keep = claims._standardized_columns(Z)
    pairs = claims._PairGroups(net, keep[0])
    iu = np.triu_indices(w_idx.size, k=1)
    ok = keep[0][iu[0]] & keep[0][iu[1]]
    labels = {"category": mlpsim.analysis.pair_categories(net)[iu][ok],
              "distance": mlpsim.analysis.edge_distances(net)[iu][ok]}
    for way in (pairs._sums_by_kernels, pairs._sums_by_blocks):
        got = pairs.means_of(way(Z))
        for b in range(Z.shape[0]):
            r2 = ((Z[b].T @ Z[b] / E)[iu][ok]) ** 2
            for kind, g in labels.items():
                for code in range(got[kind].shape[1]):
                    expected = r2[g == code].mean() if np.any(g == code) else np.nan
                    np.testing.assert_allclose(got[kind][b, code], expected, rtol=1e-12, err_msg=f"{way.__name__} {kind} {code}")
    assert pairs.counts["category"][0] == 0 and pairs.counts["category"].sum() == ok.sum()


def test_evaluate_refuses_bad_arguments_by_name():
    from mlpsim.errors import ClaimError
    net = mlpsim.MLP([1, 4, 1])
    traj = planted.trajectory(net, np.zeros((3, net.n_params)) + 0.1, np.zeros((3, net.n_params)) + 0.2)
    for kwargs, message in [({"seed": -1}, "seed must be a whole number >= 0"), ({"seed": "1"}, "seed must"),
                            ({"level": "0.05"}, "level must be a number in"), ({"checkpoint": 1.5}, "checkpoint must"),
                            ({"n_nul": 5}, "claim 'longer_tails' has no option 'n_nul'; its options: n_null")]:
        with pytest.raises(ClaimError, match=message):
            claims.evaluate("longer_tails", traj, **kwargs)
