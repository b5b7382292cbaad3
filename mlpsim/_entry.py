"""The ``mlpsim`` console script: imports the command line only inside ``main``, so that a
Ctrl-C while numpy and numba load ends quietly (exit 130) instead of in a traceback."""
import sys


def main() -> int:
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        print("mlpsim: interrupted while starting; nothing was done", file=sys.stderr)
        return 130
    return cli_main()
