"""Progress of long work, for a person at a terminal and for a batch log alike.

On a terminal: a tqdm bar with the step, the current loss and an ETA. Anywhere
else (``nohup``, Slurm, a pipe): a plain line every ``every_seconds`` or every
5 % of the work, whichever comes first, with the same numbers, so a log shows
that work goes on. ``mode="quiet"`` shows nothing.
"""
from __future__ import annotations

import sys
import time

MODES = ("auto", "bar", "lines", "quiet")


def resolve_mode(progress) -> str:
    """``progress`` as given by callers: True/False/None or a mode name."""
    if progress is None or progress == "auto":
        return "bar" if sys.stderr.isatty() else "lines"
    if progress is True:
        return "bar"
    if progress is False:
        return "quiet"
    if progress not in MODES:
        raise ValueError(f"progress must be True, False, None or one of {', '.join(MODES)}, got {progress!r}")
    return progress


def fmt_seconds(s: float) -> str:
    s = max(0.0, float(s))
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


class Progress:
    """Progress of ``total`` units of work (e.g. steps), started at ``initial``."""

    def __init__(self, total: int, initial: int = 0, desc: str = "", unit: str = "step", progress=None,
                 every_seconds: float = 10.0, stream=None):
        self.mode = resolve_mode(progress)
        self.total, self.done, self.start_done = int(total), int(initial), int(initial)
        self.desc, self.unit = desc, unit
        self.stream = stream or sys.stderr
        self.every = float(every_seconds)
        self.t0 = self.last = time.monotonic()
        self.last_done = self.done
        self.bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.total, initial=self.done, unit=unit, desc=desc, file=self.stream,
                            dynamic_ncols=True)

    def eta(self) -> float:
        rate = (self.done - self.start_done) / max(time.monotonic() - self.t0, 1e-9)
        return (self.total - self.done) / rate if rate > 0 else float("nan")

    def update(self, n: int, **info):
        """``n`` more units done; ``info`` (e.g. ``loss=0.01``) is shown beside the count."""
        self.done += int(n)
        if self.bar is not None:
            if info:
                self.bar.set_postfix({k: _fmt(v) for k, v in info.items()}, refresh=False)
            self.bar.update(int(n))
        elif self.mode == "lines":
            t = time.monotonic()
            step = max(1, self.total // 20)
            if t - self.last >= self.every or self.done - self.last_done >= step or self.done >= self.total:
                self.last, self.last_done = t, self.done
                extra = "".join(f", {k} {_fmt(v)}" for k, v in info.items())
                eta = self.eta()
                print(f"{self.desc}: {self.unit} {self.done}/{self.total} ({100 * self.done / max(self.total, 1):.0f} %)"
                      f"{extra}, elapsed {fmt_seconds(t - self.t0)}"
                      + (f", ETA {fmt_seconds(eta)}" if eta == eta and self.done < self.total else ""),
                      file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
