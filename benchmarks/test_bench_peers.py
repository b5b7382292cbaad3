"""mlpsim against PyTorch eager and JAX (jit, vmap + lax.scan) on the seed preset's training.

Not dependencies of mlpsim: run in an environment that has them
(``pip install torch==2.13.0 jax optax``); skipped elsewhere. Each framework
trains the seed preset's ensemble (5 ReLU nets 1-8-8-8-1, full batch n = 5000,
Adam with the seed's bias-corrected step) in float64 on the same data and initial
parameters, on the same threads, in the same process; the figure is each one's
time per step and mlpsim's speed as a multiple of it, printed and stored in the
benchmark's extra_info. ``test_seed_preset_whole_process`` times the whole seed
preset (15000 steps, 1501 checkpoints) as one process each: ``mlpsim train
--preset seed`` against the same training as a PyTorch and a JAX script.

    python -m pytest benchmarks/test_bench_peers.py --benchmark-enable -s
"""
import time

import numpy as np
import pytest

import mlpsim
from mlpsim.training import Ensemble, build_net, initial_params, training_data

STEPS = 200


@pytest.fixture(scope="module")
def seed_problem():
    cfg = mlpsim.preset("seed")
    net = build_net(cfg)
    x, y, _, _ = training_data(cfg, net)
    thetas = initial_params(cfg, net)
    return cfg, net, x, y, thetas


def _mlpsim_step_seconds(cfg, net, x, y, thetas) -> float:
    ens = Ensemble(net, cfg.train, x, y, thetas)
    ens.run(5)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        ens.run(STEPS)
        best = min(best, (time.perf_counter() - t0) / STEPS)
    return best


def _mlpsim_after(cfg, net, x, y, thetas, steps=STEPS):
    ens = Ensemble(net, cfg.train, x, y, thetas)
    ens.run(steps)
    return _unpack(net, ens.thetas)


def _unpack(net, thetas):
    """Per layer (W (E, out, in), b (E, out)) from flat parameters."""
    return [(np.stack([net.view(t, f"W{l + 1}") for t in thetas]), np.stack([net.view(t, f"b{l + 1}") for t in thetas]))
            for l in range(net.n_layers)]


def _report(benchmark, name, peer, ours):
    benchmark.extra_info.update({f"{name}_us_per_step": peer * 1e6, "mlpsim_us_per_step": ours * 1e6,
                                 "mlpsim_speedup": peer / ours})
    print(f"\n{name}: {peer * 1e6:.0f} us per step of 5 seed nets; mlpsim {ours * 1e6:.0f} us: "
          f"mlpsim is {peer / ours:.1f}x as fast")


def test_against_pytorch_eager(benchmark, seed_problem):
    torch = pytest.importorskip("torch")
    cfg, net, x, y, thetas = seed_problem
    ours = _mlpsim_step_seconds(cfg, net, x, y, thetas)  # first: PyTorch's OpenMP threads spin on after it
    torch.set_num_threads(2)
    params = [torch.tensor(a, requires_grad=True) for pair in _unpack(net, thetas) for a in pair]
    X, Y = torch.tensor(x), torch.tensor(y)
    t = cfg.train
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]

    def step(k):
        h = X.T.unsqueeze(0).expand(len(thetas), -1, -1)  # (E, 1, n)
        for l in range(net.n_layers):
            W, b = params[2 * l], params[2 * l + 1]
            h = torch.baddbmm(b.unsqueeze(-1), W, h)
            if l < net.n_layers - 1:
                h = torch.relu(h)
        loss = ((h - Y.T.unsqueeze(0)) ** 2).mean(dim=(1, 2)).sum()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():  # Adam in the seed's form (the step size carries the bias correction)
            lr_t = t.lr * (1 - t.beta2 ** k) ** 0.5 / (1 - t.beta1 ** k)
            for p, g, mm, vv in zip(params, grads, m, v):
                mm.mul_(t.beta1).add_(g, alpha=1 - t.beta1)
                vv.mul_(t.beta2).addcmul_(g, g, value=1 - t.beta2)
                p.sub_(lr_t * mm / (vv.sqrt() + t.eps))

    def run():
        for k in range(1, STEPS + 1):
            step(k)
    run()
    # the same computation: the same parameters after STEPS steps, to round-off
    for (W, b), p in zip(_mlpsim_after(cfg, net, x, y, thetas), params[0::2]):
        np.testing.assert_allclose(p.detach().numpy(), W, rtol=1e-6, atol=1e-9)
    peer = min(_timed(run) for _ in range(2)) / STEPS
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    _report(benchmark, "pytorch_eager", peer, ours)


def test_against_jax_scan(benchmark, seed_problem):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    cfg, net, x, y, thetas = seed_problem
    t = cfg.train
    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in _unpack(net, thetas)]
    X, Y = jnp.asarray(x), jnp.asarray(y)

    def loss_one(p):
        h = X
        for l, (W, b) in enumerate(p):
            h = h @ W.T + b
            if l < len(p) - 1:
                h = jax.nn.relu(h)
        return jnp.mean((h - Y) ** 2)

    grad_all = jax.vmap(jax.value_and_grad(loss_one))

    def adam(carry, k):
        p, m, v = carry
        _, g = grad_all(p)
        lr_t = t.lr * jnp.sqrt(1 - t.beta2 ** k) / (1 - t.beta1 ** k)
        m = jax.tree_util.tree_map(lambda a, b: t.beta1 * a + (1 - t.beta1) * b, m, g)
        v = jax.tree_util.tree_map(lambda a, b: t.beta2 * a + (1 - t.beta2) * b * b, v, g)
        p = jax.tree_util.tree_map(lambda a, mm, vv: a - lr_t * mm / (jnp.sqrt(vv) + t.eps), p, m, v)
        return (p, m, v), None

    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    run = jax.jit(lambda c: jax.lax.scan(adam, c, jnp.arange(1.0, STEPS + 1))[0])
    trained = jax.block_until_ready(run((params, zeros, zeros)))[0]  # compiles
    for (W, b), (Wj, bj) in zip(_mlpsim_after(cfg, net, x, y, thetas), trained):
        np.testing.assert_allclose(np.asarray(Wj), W, rtol=1e-6, atol=1e-9)

    def once():
        jax.block_until_ready(run((params, zeros, zeros)))
    peer = min(_timed(once) for _ in range(3)) / STEPS
    ours = _mlpsim_step_seconds(cfg, net, x, y, thetas)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    _report(benchmark, "jax_scan", peer, ours)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ----------------------------------------------------------------- whole processes
# The seed preset as a user runs it: one process from start to exit (imports, 15000
# steps of 5 nets, 1501 checkpoints kept and saved), warm caches. The peers get the
# data and initial parameters from a file (not timed) and keep their checkpoints in
# memory, saved once at the end: no less favourable to them than mlpsim's store.

_TORCH_SCRIPT = """
import sys, numpy as np, torch
d = np.load(sys.argv[1]); steps, every = int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(2)
X, Y = torch.tensor(d["x"]), torch.tensor(d["y"])
params = [torch.tensor(d[f"p{k}"], requires_grad=True) for k in range(int(d["n"]))]
m = [torch.zeros_like(p) for p in params]; v = [torch.zeros_like(p) for p in params]
lr, b1, b2, eps = (float(d[k]) for k in ("lr", "beta1", "beta2", "eps"))
E, L = params[0].shape[0], len(params) // 2
saved = [np.concatenate([p.detach().numpy().reshape(E, -1) for p in params], axis=1)]
for k in range(1, steps + 1):
    h = X.T.unsqueeze(0).expand(E, -1, -1)
    for l in range(L):
        h = torch.baddbmm(params[2 * l + 1].unsqueeze(-1), params[2 * l], h)
        if l < L - 1:
            h = torch.relu(h)
    loss = ((h - Y.T.unsqueeze(0)) ** 2).mean(dim=(1, 2)).sum()
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        lr_t = lr * (1 - b2 ** k) ** 0.5 / (1 - b1 ** k)
        for p, g, mm, vv in zip(params, grads, m, v):
            mm.mul_(b1).add_(g, alpha=1 - b1)
            vv.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.sub_(lr_t * mm / (vv.sqrt() + eps))
    if k % every == 0 or k == steps:
        saved.append(np.concatenate([p.detach().numpy().reshape(E, -1) for p in params], axis=1))
np.save(sys.argv[4], np.stack(saved))
"""

_JAX_SCRIPT = """
import sys, numpy as np, jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
d = np.load(sys.argv[1]); steps, every = int(sys.argv[2]), int(sys.argv[3])
X, Y = jnp.asarray(d["x"]), jnp.asarray(d["y"])
n = int(d["n"])
params = [(jnp.asarray(d[f"p{2 * l}"]), jnp.asarray(d[f"p{2 * l + 1}"])) for l in range(n // 2)]
lr, b1, b2, eps = (float(d[k]) for k in ("lr", "beta1", "beta2", "eps"))

def loss_one(p):
    h = X
    for l, (W, b) in enumerate(p):
        h = h @ W.T + b
        if l < len(p) - 1:
            h = jax.nn.relu(h)
    return jnp.mean((h - Y) ** 2)

grad_all = jax.vmap(jax.value_and_grad(loss_one))
tm = jax.tree_util.tree_map

def adam(carry, k):
    p, m, v = carry
    _, g = grad_all(p)
    lr_t = lr * jnp.sqrt(1 - b2 ** k) / (1 - b1 ** k)
    m = tm(lambda a, b: b1 * a + (1 - b1) * b, m, g)
    v = tm(lambda a, b: b2 * a + (1 - b2) * b * b, v, g)
    p = tm(lambda a, mm, vv: a - lr_t * mm / (jnp.sqrt(vv) + eps), p, m, v)
    return (p, m, v), None

def interval(carry, k0):  # `every` steps, then a checkpoint
    carry, _ = jax.lax.scan(adam, carry, k0 + jnp.arange(1.0, every + 1))
    return carry, carry[0]

run = jax.jit(lambda c: jax.lax.scan(interval, c, jnp.arange(0.0, steps, every))[1])
zeros = tm(jnp.zeros_like, params)
saved = jax.block_until_ready(run((params, zeros, zeros)))
np.save(sys.argv[4], np.concatenate([np.asarray(a).reshape(a.shape[0], a.shape[1], -1) for pair in saved for a in pair], axis=2))
"""


def _wall(cmd) -> float:
    import subprocess
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return time.perf_counter() - t0


def test_seed_preset_whole_process(benchmark, seed_problem, tmp_path):
    """``mlpsim train --preset seed`` against the same training written for PyTorch and JAX."""
    import shutil
    import sys
    have = [name for name in ("torch", "jax") if _importable(name)]
    if not have:
        pytest.skip("needs torch or jax (pip install torch==2.13.0 jax optax)")
    cfg, net, x, y, thetas = seed_problem
    t = cfg.train
    pairs = _unpack(net, thetas)
    data = tmp_path / "seed.npz"
    np.savez(data, x=x, y=y, n=2 * len(pairs), lr=t.lr, beta1=t.beta1, beta2=t.beta2, eps=t.eps,
             **{f"p{k}": a for k, a in enumerate(a for pair in pairs for a in pair)})
    mlpsim_exe = shutil.which("mlpsim", path=str(__import__("pathlib").Path(sys.executable).parent))
    cmd = [mlpsim_exe, "train", "--preset", "seed", "--quiet", "--out"]
    _wall(cmd + [str(tmp_path / "warm")])  # warm numba's cache, as a user's second run finds it
    ours = min(_wall(cmd + [str(tmp_path / f"run{k}")]) for k in range(2))
    lines = [f"mlpsim train --preset seed: {ours:.1f} s (whole process, {t.steps} steps, warm cache)"]
    for name, script in (("torch", _TORCH_SCRIPT), ("jax", _JAX_SCRIPT)):
        if name not in have:
            continue
        peer = _wall([sys.executable, "-c", script, str(data), str(t.steps), str(t.checkpoint_every),
                      str(tmp_path / f"{name}.npy")])
        benchmark.extra_info[f"{name}_seconds"] = peer
        lines.append(f"{name}: {peer:.1f} s; mlpsim is {peer / ours:.1f}x as fast")
    benchmark.extra_info["mlpsim_seconds"] = ours
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print("\n" + "\n".join(lines))


def _importable(name) -> bool:
    import importlib.util
    return importlib.util.find_spec(name) is not None
