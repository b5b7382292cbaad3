import os
import signal
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Studies find and keep runs in a runs folder (see mlpsim.study); tests must never touch the
# user's (~/.cache/mlpsim/runs), so the whole session shares a temporary one.
os.environ["MLPSIM_RUNS"] = tempfile.mkdtemp(prefix="mlpsim-test-runs-")

# A shell starts a background job ("cmd &" without job control) with Ctrl-C ignored, and
# an ignored signal survives exec: pytest, and every mlpsim process a test starts, would then
# ignore SIGINT, and the Ctrl-C tests would see runs that cannot be stopped. mlpsim rightly
# keeps an inherited SIG_IGN (nohup-style use); the tests restore the terminal's default so
# that their child processes start as they would from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def seed_study_output(tmp_path_factory):
    """``mlpsim study seed`` on 16 tiny instances (test_studies.TINY16: the claims need
    16), run once for every test that reads a study's outputs (its figures take 10 s):
    (the study's folder, what it printed)."""
    import contextlib
    import io

    from mlpsim.cli import main
    out = tmp_path_factory.mktemp("study") / "seed"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["study", "seed", "--preset", "tiny", "--set", "train.instances=16", "--out", str(out),
                     "--no-progress"]) == 0
    return out, printed.getvalue()
