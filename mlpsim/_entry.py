"""The ``mlpsim`` console script: imports the command line only inside ``main``, so that a
Ctrl-C while numpy and numba load ends quietly (exit 130) instead of in a traceback."""
import signal
import sys


def main() -> int:
    # A KeyboardInterrupt raised inside a C extension's import does not always stay a
    # KeyboardInterrupt: numpy's module init, interrupted while it imports ``datetime``,
    # reports an ImportError instead. So Ctrl-C during start-up only sets a flag; the
    # imports finish (a second or two) and the flag is read once they have.
    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    try:
        from .cli import main as cli_main
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if interrupted:
        print("mlpsim: interrupted while starting; nothing was done", file=sys.stderr)
        return 130
    return cli_main()
