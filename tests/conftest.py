import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# Studies find and keep runs in a runs folder (see mlpsim.study); tests must never touch the
# user's (~/.cache/mlpsim/runs), so the whole session shares a temporary one.
os.environ["MLPSIM_RUNS"] = tempfile.mkdtemp(prefix="mlpsim-test-runs-")
