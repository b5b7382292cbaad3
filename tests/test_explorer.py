"""The run explorer and the report, opened in a real browser (headless Chromium) from file://.

Without a browser these tests skip and say how to install one; with CI=true they fail instead.
"""
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import mlpsim
from mlpsim.cli import EXIT_BAD_INPUT, main
from mlpsim.explore import build_explorer

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    message = ("no Chromium found for the browser tests; install one (Debian: apt-get install -y chromium) "
               "or run .ci/run, which installs it")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def open_page(page: Path, fragment: str = "", screenshot: Path = None, tmp=None):
    """Load ``page`` in headless Chromium; return (DOM after the scripts ran, console log, seconds)."""
    exe = browser()
    profile = Path(tmp or page.parent) / f"chromium-profile-{time.monotonic_ns()}"
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
            f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--hide-scrollbars",
            "--window-size=1400,1500", "--virtual-time-budget=8000"]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    t0 = time.perf_counter()
    proc = subprocess.run(args + [page.resolve().as_uri() + fragment], capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - t0
    shutil.rmtree(profile, ignore_errors=True)
    console = "\n".join(l for l in proc.stderr.splitlines() if "CONSOLE" in l)
    return proc.stdout, console, seconds


def element(dom: str, ident: str) -> dict:
    """The attributes and text of the element with id ``ident`` in a dumped DOM."""
    m = re.search(rf'<(\w+)([^>]*)\bid="{ident}"([^>]*)>([^<]*)', dom)
    assert m, f"no element #{ident}"
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', m.group(2) + m.group(3)))
    return {"attrs": attrs, "text": m.group(4)}


def no_errors(dom: str, console: str):
    assert "Uncaught" not in console and "rror" not in console, console
    errors = element(dom, "errors")
    assert "hidden" in errors["attrs"] and errors["text"].strip() == "", errors


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = mlpsim.preset("tiny").with_values({"train.instances": 4})
    return mlpsim.train(cfg, tmp_path_factory.mktemp("explore") / "run", progress=False)


@pytest.fixture(scope="module")
def page(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("page") / "explorer.html"
    assert main(["explore", "--run", str(run.path), "--out", str(out)]) == 0
    return out


def test_the_last_checkpoint_shows_the_runs_last_loss(run, page):
    dom, console, _ = open_page(page, "#instance=2&checkpoint=last")
    no_errors(dom, console)
    loss = element(dom, "loss")
    assert float(loss["attrs"]["data-value"]) == float(np.asarray(run.loss)[2, -1])  # full precision
    assert element(dom, "step")["attrs"]["data-value"] == str(int(run.steps[-1]))
    assert element(dom, "slider")["attrs"].get("value") is not None


def test_the_drawn_output_is_the_networks_output(run, page):
    dom, console, _ = open_page(page, "#instance=1&checkpoint=last")
    no_errors(dom, console)
    curve = element(dom, "output-curve")["attrs"]
    xs = np.array(json.loads(curve["data-x"].replace("&quot;", '"')))
    ys = np.array(json.loads(curve["data-y"].replace("&quot;", '"')))
    pick = np.arange(0, xs.size, 37)
    expected = run.net.forward(np.asarray(run.params[1, -1]), xs[pick][:, None])[:, 0]
    assert np.max(np.abs(ys[pick] - expected)) < 1e-6


def test_a_fragment_addresses_a_checkpoint(run, page):
    dom, console, _ = open_page(page, "#instance=0&checkpoint=3")
    no_errors(dom, console)
    assert element(dom, "step")["attrs"]["data-value"] == str(int(run.steps[3]))
    assert float(element(dom, "loss")["attrs"]["data-value"]) == float(np.asarray(run.loss)[0, 3])


def test_a_screenshot_is_not_blank(page, tmp_path):
    shot = tmp_path / "shot.png"
    open_page(page, "#instance=0&checkpoint=last", screenshot=shot, tmp=tmp_path)
    import matplotlib.image
    img = matplotlib.image.imread(shot)
    assert img.shape[0] > 500 and img[..., :3].std() > 0.05  # drawings, not an empty page


def test_a_running_and_a_failed_run_say_so(run, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(run.path, partial)
    m = json.loads((partial / "manifest.json").read_text())
    m.update(status="running", checkpoints_written=6, steps_done=100)
    (partial / "manifest.json").write_text(json.dumps(m))
    build_explorer(partial, tmp_path / "partial.html")
    dom, console, _ = open_page(tmp_path / "partial.html", "#checkpoint=last")
    no_errors(dom, console)
    assert "running: showing the 6 of 11 checkpoints written so far" in element(dom, "banner")["text"]
    assert element(dom, "step")["attrs"]["data-value"] == "100"
    cfg = mlpsim.preset("tiny").with_values({"train.optimizer": "gd", "train.lr": 100.0})
    with pytest.raises(mlpsim.TrainingDiverged):
        mlpsim.train(cfg, tmp_path / "failed", progress=False)
    build_explorer(tmp_path / "failed", tmp_path / "failed.html")
    dom, console, _ = open_page(tmp_path / "failed.html")
    no_errors(dom, console)
    assert "This run failed: diverged" in element(dom, "banner")["text"]


def test_explore_refuses_what_is_not_a_run(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["explore", "--run", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "x.html")]) == EXIT_BAD_INPUT
    assert "not a run directory" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def test_a_wide_network_thins_its_edges_and_stays_quick(tmp_path):
    cfg = mlpsim.preset("wide").with_values({"train.steps": 40, "train.checkpoint_every": 10, "data.n": 200,
                                            "train.instances": 2})
    run = mlpsim.train(cfg, tmp_path / "wide", progress=False)
    info = build_explorer(run, tmp_path / "wide.html")
    dom, console, seconds = open_page(tmp_path / "wide.html", "#colour=change")
    no_errors(dom, console)
    assert "Showing the 2000 largest of 8320 edges" in element(dom, "edge-note")["text"]  # 64 + 4096 + 4096 + 64
    assert seconds < 30 and info["bytes"] < 5e6


def test_the_report_of_a_study(seed_study_output):
    study, text = seed_study_output  # `mlpsim study seed` writes the explorer and the report too
    assert f"explorer: {study / 'explorer-tiny.html'}" in text and "report: " in text
    report = study.parent / "report"
    assert (report / "index.html").exists() and (report / "notebook.html").exists()
    dom, console, _ = open_page(report / "index.html")
    no_errors_in_report(console)
    assert "broadening" in dom and "explorer-tiny.html" in dom and "fig2_density.png" in dom
    nb, console, _ = open_page(report / "notebook.html")
    no_errors_in_report(console)
    assert "ListDensityPlot" in nb and "fig2_density.png" in nb and "mlpsim study seed" in nb
    page = next(report.glob("*/explorer-tiny.html"))
    dom, console, _ = open_page(page, "#checkpoint=last")
    no_errors(dom, console)


def no_errors_in_report(console: str):
    assert "Uncaught" not in console and "rror" not in console, console


def test_report_on_a_folder_without_studies(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", "--out", str(tmp_path / "r"), str(tmp_path / "empty")]) == EXIT_BAD_INPUT
    assert "summary.json and meta.json" in capsys.readouterr().err


def test_a_report_reads_each_output_once_and_not_into_itself(tmp_path, capsys):
    src = tmp_path / "out"
    for name in ("a", "b"):
        (src / name).mkdir(parents=True)
        (src / name / "summary.json").write_text('{"study": "distribution", "verdicts": []}')
        (src / name / "meta.json").write_text('{"study": "distribution", "runs": {}}')
    assert main(["report", "--out", str(src / "report"), str(src)]) == 0  # beside the outputs, as studies do
    capsys.readouterr()
    assert main(["report", "--out", str(tmp_path / "r"), str(src)]) == 0
    assert "(2 study outputs)" in capsys.readouterr().out  # not 4: the first report's copies are not outputs
    for out in (src, tmp_path):
        assert main(["report", "--out", str(out), str(src)]) == EXIT_BAD_INPUT
        assert "is (or holds) the folder the report reads" in capsys.readouterr().err
