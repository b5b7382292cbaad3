"""Forward pass, loss and gradient against the NumPy reference and finite differences."""
import os
import re

import numpy as np
import pytest

import mlpsim
import reference as ref

ARCHS = [
    ([1, 1], "identity"),
    ([1, 8, 8, 8, 1], "relu"),
    ([3, 16, 2], "tanh"),
    ([2, 5, 7, 4, 3], "leaky_relu"),
    ([1, 16, 1, 16, 1], "tanh"),
    ([4, 1, 3], "relu"),
]


def make_problem(widths, n, seed=0, masks=None):
    rng = np.random.default_rng(seed)
    net = mlpsim.MLP(widths, activation=ARCH_ACT.get(tuple(widths), "relu"), masks=masks)
    theta = net.init(seed=seed, bias_init="normal", bias_scale=0.3)
    x = rng.uniform(-2, 2, (n, widths[0]))
    y = rng.normal(size=(n, widths[-1]))
    return net, theta, x, y


ARCH_ACT = {tuple(w): a for w, a in ARCHS}


@pytest.mark.parametrize("widths,activation", ARCHS)
@pytest.mark.parametrize("n", [1, 7, 300, 777])
def test_forward_loss_grad_match_reference(widths, activation, n):
    net, theta, x, y = make_problem(widths, n, seed=n)
    yhat = net.forward(theta, x)
    yref, _, _ = ref.forward(theta, widths, x, activation)
    np.testing.assert_allclose(yhat, yref, rtol=1e-12, atol=1e-12)
    loss, grad = net.loss_and_grad(theta, x, y)
    lref, gref = ref.loss_and_grad(theta, widths, x, y, activation)
    np.testing.assert_allclose(loss, lref, rtol=1e-12)
    np.testing.assert_allclose(grad, gref, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("widths,activation", ARCHS)
def test_gradient_matches_central_differences(widths, activation):
    net, theta, x, y = make_problem(widths, 50, seed=3)
    _, grad = net.loss_and_grad(theta, x, y)
    num = ref.numerical_grad(lambda t: net.loss(t, x, y), theta)
    # relu kinks: no sample sits within h of a kink for these seeds; checked by the tolerance
    err = np.linalg.norm(grad - num) / max(np.linalg.norm(num), 1e-300)
    assert err < 1e-6, err


def test_gradient_with_masks_matches_central_differences():
    widths = [2, 6, 6, 2]
    rng = np.random.default_rng(5)
    masks = [None, (rng.random((6, 6)) < 0.5).astype(int), (rng.random((2, 6)) < 0.7).astype(int)]
    net = mlpsim.MLP(widths, activation="tanh", masks=masks)
    theta = net.init(seed=1, bias_init="normal", bias_scale=0.2)
    x = rng.uniform(-2, 2, (40, 2))
    y = rng.normal(size=(40, 2))
    assert np.all(theta[net.free == 0] == 0)
    _, grad = net.loss_and_grad(theta, x, y)
    assert np.all(grad[net.free == 0] == 0)
    num = ref.numerical_grad(lambda t: net.loss(t * net.free, x, y), theta) * net.free
    err = np.linalg.norm(grad - num) / np.linalg.norm(num)
    assert err < 1e-6, err


def test_ensemble_forward_equals_single():
    net, theta, x, y = make_problem([1, 8, 8, 8, 1], 600)
    thetas = np.stack([net.init(seed=s) for s in range(4)])
    out = net.forward(thetas, x)
    loss, grad = net.loss_and_grad(thetas, x, y)
    for e in range(4):
        assert np.array_equal(out[e], net.forward(thetas[e], x))
        l1, g1 = net.loss_and_grad(thetas[e], x, y)
        assert l1 == loss[e] and np.array_equal(g1, grad[e])


def test_float32_close_to_float64():
    net, theta, x, y = make_problem([1, 8, 8, 8, 1], 1000)
    l64, g64 = net.loss_and_grad(theta, x, y)
    l32, g32 = net.loss_and_grad(theta.astype(np.float32), x, y)
    assert g32.dtype == np.float32
    np.testing.assert_allclose(l32, l64, rtol=1e-5)
    np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-5)


def test_hand_worked_network():
    """1 -> 2 -> 1 relu network, one sample, every number written out by hand."""
    net = mlpsim.MLP([1, 2, 1])
    # W1 = [[1], [-1]], b1 = [0.5, 0.5], W2 = [[2, 3]], b2 = [0.1]
    theta = np.array([1.0, -1.0, 0.5, 0.5, 2.0, 3.0, 0.1])
    x = np.array([[2.0]])
    y = np.array([[1.0]])
    # z1 = [2.5, -1.5], a1 = [2.5, 0], yhat = 2*2.5 + 3*0 + 0.1 = 5.1
    assert net.forward(theta, x)[0, 0] == pytest.approx(5.1)
    loss, grad = net.loss_and_grad(theta, x, y)
    # loss = (5.1 - 1)^2 = 16.81; dL/dyhat = 2 * 4.1 = 8.2
    assert loss == pytest.approx(16.81)
    # dW2 = 8.2 * a1 = [20.5, 0]; db2 = 8.2
    # delta1 = 8.2 * W2 * relu'(z1) = [16.4, 0]; dW1 = delta1 * x = [32.8, 0]; db1 = [16.4, 0]
    np.testing.assert_allclose(grad, [32.8, 0.0, 16.4, 0.0, 20.5, 0.0, 8.2], rtol=1e-14)


def test_relu_derivative_is_zero_at_zero():
    net = mlpsim.MLP([1, 1, 1])
    theta = np.array([1.0, 0.0, 1.0, 0.0])  # z1 = x; at x = 0, relu'(0) = 0
    _, grad = net.loss_and_grad(theta, np.array([[0.0]]), np.array([[1.0]]))
    assert grad[0] == 0.0 and grad[1] == 0.0


def test_loss_and_grad_of_read_only_parameters():
    # a run's checkpoints are memory-mapped read-only; the kernel writes nothing of them
    net = mlpsim.MLP([1, 8, 1])
    theta = np.stack([net.init(seed=s) for s in range(2)])
    x = np.linspace(-1, 1, 300)[:, None]
    y = np.sin(3 * x)
    frozen = theta.copy()
    frozen.setflags(write=False)
    loss, grad = net.loss_and_grad(frozen, x, y)
    want_loss, want_grad = net.loss_and_grad(theta, x, y)
    np.testing.assert_array_equal(loss, want_loss)
    np.testing.assert_array_equal(grad, want_grad)
    np.testing.assert_array_equal(frozen, theta)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_sample_gets_the_same_bits_in_a_vector_or_in_the_scalar_tail(dtype):
    # a short chunk's last samples take the scalar loop; the documented arithmetic
    # (fused multiply-adds in input order) must not depend on which path a sample takes
    net = mlpsim.MLP([1, 8, 8, 8, 1])
    theta = net.init(seed=3).astype(dtype)
    x = np.linspace(-3, 3, 1000)[:, None]
    full = net.forward(theta, x)
    for k in (999, 990, 517, 7):
        np.testing.assert_array_equal(net.forward(theta, x[:k]), full[:k])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_zero_gradient_is_plus_zero_whatever_its_chunks_and_padding_gave(dtype):
    # A short chunk's backward pass stops at its samples rounded up to whole vector
    # pairs (kernels.chunk_gradient): that can leave a chunk's partial sum at -0.0
    # where more padding would have made it +0.0. The gradient keeps its bits because
    # the chunks' sum starts from +0.0. Here a dead unit's input weight gets
    # products +0 * x with every x < 0, and no sample is padded (n a multiple of
    # 32): each chunk's partial sum is -0.0.
    net = mlpsim.MLP([1, 4, 1])
    theta = net.init(seed=1).astype(dtype)
    net.view(theta, "W1")[0, 0] = 1.0
    net.view(theta, "b1")[0] = -10.0  # z = x - 10 < 0: unit 1 is dead, its delta is 0
    for n in (256, 320):  # float64: a whole chunk, then also a short one; float32: a short one
        x = -np.linspace(1.0, 3.0, n)[:, None]
        _, grad = net.loss_and_grad(theta, x, np.ones((n, 1)))
        w, b = net.view(grad, "W1")[0, 0], net.view(grad, "b1")[0]
        assert w == 0.0 and b == 0.0
        assert not np.signbit(w) and not np.signbit(b)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_chunk_len_in_compiled_code_agrees_with_chunk_samples(dtype):
    # chunk_len is an intrinsic (a constant in the kernel's code); every chunk
    # boundary, in training and in reduce_chunks, relies on it matching the Python side.
    import numba

    from mlpsim import kernels

    @numba.njit
    def length(a):
        return kernels.chunk_len(a)

    assert length(np.zeros((1, 1), dtype=dtype)) == kernels.chunk_samples(dtype) == kernels.CHUNK_VECTORS * 64 // np.dtype(dtype).itemsize


BLOCKINGS = '''
import sys
import os
import re

import numpy as np
import mlpsim
from mlpsim import simd
archs = {archs!r}
out = {{"wide": np.array([simd.WIDE_REGISTERS]), "fma": np.array([simd.HARDWARE_FMA])}}
for k, (widths, activation) in enumerate(archs):
    for n, dtype in {cases!r}:
        rng = np.random.default_rng(k)
        net = mlpsim.MLP(widths, activation=activation)
        theta = net.init(seed=k, bias_init="normal", bias_scale=0.3).astype(dtype)
        x = rng.uniform(-2, 2, (n, widths[0])).astype(dtype)
        y = rng.normal(size=(n, widths[-1])).astype(dtype)
        loss, grad = net.loss_and_grad(theta, x, y)
        out[f"{{k}}-{{dtype}}-grad"] = grad
        out[f"{{k}}-{{dtype}}-loss"] = np.array([loss])
        out[f"{{k}}-{{dtype}}-forward"] = net.forward(theta, x)
np.savez(sys.argv[1], **out)
'''


def test_both_register_blockings_and_software_fma_give_the_same_bits_and_the_reference_gradients(tmp_path):
    # The kernels block their loops by the target's register file (simd.WIDE_REGISTERS):
    # a machine runs one blocking, so both are forced here, each with its own cache.
    # The other blocking also emulates its multiply-adds (MLPSIM_FMA=software, as
    # on a CPU without FMA: simd.HARDWARE_FMA), so one more compilation checks both.
    # float64 only: float32's compilation would double the test's 40 s, and the slow
    # golden tests run float32 on AVX2 and SSE, which take the narrow blocking (and,
    # SSE, the emulation).
    import subprocess
    import sys
    cases = [(777, "float64")]
    results = {}
    from mlpsim import simd
    for mode in ("wide", "narrow"):
        if mode == ("wide" if simd.WIDE_REGISTERS else "narrow"):  # this machine's own: its warm cache
            env = {k: v for k, v in os.environ.items() if k not in ("MLPSIM_REGISTERS", "MLPSIM_FMA")}
        else:
            env = dict(os.environ, MLPSIM_REGISTERS=mode, MLPSIM_FMA="software",
                       NUMBA_CACHE_DIR=str(tmp_path / f"cache-{mode}"))
        path = tmp_path / f"{mode}.npz"
        proc = subprocess.run([sys.executable, "-c", BLOCKINGS.format(archs=ARCHS, cases=cases), str(path)], env=env,
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        results[mode] = dict(np.load(path))
    assert results["wide"]["wide"][0] and not results["narrow"]["wide"][0]
    own = "wide" if simd.WIDE_REGISTERS else "narrow"
    assert not results["narrow" if own == "wide" else "wide"]["fma"][0]
    for key, value in results["wide"].items():
        if key not in ("wide", "fma"):
            np.testing.assert_array_equal(results["narrow"][key].view(np.uint8), value.view(np.uint8), err_msg=key)
    for k, (widths, activation) in enumerate(ARCHS):  # and both agree with the NumPy reference
        rng = np.random.default_rng(k)
        theta = mlpsim.MLP(widths, activation=activation).init(seed=k, bias_init="normal", bias_scale=0.3)
        x = rng.uniform(-2, 2, (777, widths[0]))
        y = rng.normal(size=(777, widths[-1]))
        _, gref = ref.loss_and_grad(theta, widths, x, y, activation)
        np.testing.assert_allclose(results["narrow"][f"{k}-float64-grad"], gref, rtol=1e-10, atol=1e-13)


ARM = '''
# numba is told it compiles for AArch64 (llvmlite's AArch64 back end): the kernels are
# compiled, never run, and their assembly printed.
import os, platform, re, sys
import llvmlite.binding as ll
ll.get_process_triple = lambda: "aarch64-unknown-linux-gnu"
ll.get_host_cpu_name = lambda: sys.argv[1]
platform.machine = lambda: "aarch64"
import numba.core.codegen
numba.core.codegen.get_host_cpu_features = lambda: "+neon,+fp-armv8"
ll.initialize_all_targets()
ll.initialize_all_asmprinters()
import json
import numba
import numpy as np
import mlpsim
from mlpsim import kernels, simd
from mlpsim.training import Ensemble, build_net, initial_params, training_data
report = {"wide": simd.WIDE_REGISTERS, "fma": simd.HARDWARE_FMA}
for dtype in ("float64", "float32"):
    cfg = mlpsim.preset("seed").with_overrides([f"train.dtype='{dtype}'"])
    net = build_net(cfg)
    x, y, _, _ = training_data(cfg, net)
    ens = Ensemble(net, cfg.train, x, y, initial_params(cfg, net))
    args = (ens.thetas, ens.state1, ens.state2, net.free, ens.active, ens.step, 1, ens.config.optimizer_code,
            ens.hyper, *net._kernel_layout(), ens.X, ens.Y, *ens.buffers, ens.G, ens.loss_now, np.empty((ens.thetas.shape[0], 1)))
    sig = tuple(numba.typeof(a) for a in args)
    kernels.train_steps.compile(sig)
    report[dtype] = kernels.train_steps.inspect_asm(sig)
print(json.dumps(report))
'''


def _blocks(asm: str):
    """The basic blocks of an assembly listing: lists of instruction lines."""
    blocks = [[]]
    for line in asm.splitlines():
        if re.match(r"^\.?L\w+:|^\w[\w.$]*:", line):
            blocks.append([])
        else:
            blocks[-1].append(line)
    return blocks


@pytest.mark.slow
@pytest.mark.parametrize("cpu", ["apple-m1", "neoverse-n1"])
def test_the_kernels_compile_for_arm_to_neon_multiply_adds_held_in_registers(tmp_path, cpu):
    # No ARM machine runs the tests; this compiles the training kernels for one
    # (Apple M1, AWS Graviton 2) and reads the assembly: every multiply-add a NEON
    # fmla (no call of the C library's fma), the narrow register blocking (NEON's
    # 32 registers of 16 bytes hold 8 of the kernels' 64-byte vectors), and hardly
    # a vector loaded from or stored to the stack in the blocks that do the work.
    # Measured (float64): M1 none, Graviton 2 4 beside 64 fmla; with the AVX-512
    # blocking forced (MLPSIM_REGISTERS=wide), 309 beside 480 fmla.
    import json
    import subprocess
    import sys
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", ARM, cpu], env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["fma"] and not report["wide"]
    for dtype, lanes in (("float64", "2d"), ("float32", "4s")):
        asm = report[dtype]
        fmla = re.compile(rf"\bfmla\s+v\d+\.{lanes}")
        assert len(fmla.findall(asm)) > 300, dtype
        assert not re.search(r"\bbl\s+fmaf?\b", asm), dtype
        spill = re.compile(r"\b(?:str|ldr|stp|ldp)\s+q\d+.*\[sp")
        hot = [b for b in _blocks(asm) if sum(bool(fmla.search(line)) for line in b) >= 8]
        assert len(hot) >= 4, dtype
        multiply_adds = sum(bool(fmla.search(line)) for b in hot for line in b)
        stack = [line for b in hot for line in b if spill.search(line)]
        assert len(stack) <= 0.1 * multiply_adds, (dtype, stack)
