"""Running many independent tasks (runs of a sweep or an atlas): on local processes or on Dask.

A task is a function ``fn(job, stop)`` of a picklable ``job`` that returns a small,
picklable record; ``stop()`` says whether the user asked to stop (a task that trains
passes it to :func:`mlpsim.train`, which then commits and marks the run
``interrupted``). Results come back in completion order to ``on_result(job,
result, progress_text)``.

The promises, on both executors:

* **Results do not depend on the executor**: each task runs single-threaded
  (numba's thread count is 1 in every worker), and training is bit-identical
  for any thread count anyway.
* **Ctrl-C stops at once**: queued tasks are cancelled, running ones are asked
  to stop and get a few seconds to commit (their runs end ``interrupted`` and
  resume later), then ``KeyboardInterrupt`` reaches the caller. Workers print
  no tracebacks.
* **Workers die with their driver**: a local worker whose driver disappears
  (even by SIGKILL) exits within a second.
* **A Dask scheduler that does not answer** fails within ``connect_timeout``
  seconds with its address in the message (an ``OSError``), before any task
  is submitted.
"""
from __future__ import annotations

import errno
import os
import signal
import threading
import time
from pathlib import Path

from .config import ConfigError

#: Seconds the running tasks get to commit after Ctrl-C.
STOP_GRACE = 20.0


class Executor:
    """Where tasks run: ``workers`` local processes (default: one per core), or a Dask cluster
    (``scheduler="tcp://HOST:PORT"``, or ``dask_local=N`` for a LocalCluster of N processes)."""

    def __init__(self, workers=None, scheduler=None, dask_local=None, connect_timeout: float = 5.0):
        if scheduler is not None and dask_local is not None:
            raise ConfigError("give either a Dask scheduler address or a local cluster size, not both")
        if dask_local is not None and not (isinstance(dask_local, int) and not isinstance(dask_local, bool)
                                           and dask_local >= 1):
            raise ConfigError(f"--dask-local must be a number of workers >= 1, got {dask_local!r}")
        if workers is not None and not (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1):
            raise ConfigError(f"--workers must be a number >= 1, got {workers!r}")
        if scheduler is not None and not (isinstance(scheduler, str) and scheduler.strip()):
            raise ConfigError(f"--scheduler must be an address such as tcp://host:8786, got {scheduler!r}")
        self.workers = workers or os.cpu_count() or 1
        self.scheduler, self.dask_local, self.timeout = scheduler, dask_local, float(connect_timeout)
        self.client = self.cluster = None

    @property
    def kind(self) -> str:
        return "dask" if (self.scheduler or self.dask_local) else "local"

    @property
    def n_workers(self) -> int:
        if self.client is not None:
            return max(1, len(self.client.scheduler_info().get("workers", {})))
        return self.dask_local or self.workers

    # ------------------------------------------------------------- connecting
    def __enter__(self):
        if self.kind == "dask":
            self._connect()
        return self

    def __exit__(self, *exc):
        self.close()

    def _connect(self):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("the Dask executor needs the extra: pip install '.[dask]' (from a clone) "
                              "or pip install 'dask[distributed]'") from None
        import logging
        if self.dask_local is not None:
            # The cluster's processes inherit an ignored SIGINT (an ignored signal survives exec):
            # a Ctrl-C at the terminal then reaches only this driver, which stops the tasks and
            # closes the cluster in order, instead of every worker dying with a traceback.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                self.cluster = LocalCluster(n_workers=self.dask_local, threads_per_worker=1, processes=True,
                                            dashboard_address=None, silence_logs=logging.CRITICAL)
            finally:
                signal.signal(signal.SIGINT, previous)
            self.client = Client(self.cluster)
            return
        address = self.scheduler
        try:
            self.client = Client(address, timeout=f"{self.timeout}s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise OSError(errno.ECONNREFUSED, f"cannot reach the Dask scheduler at {address} within "
                                              f"{self.timeout:g} s ({type(exc).__name__})") from None

    def close(self):
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    # ------------------------------------------------------------- running
    def map(self, fn, jobs, on_result, shared_dir=None, costs=None):
        """Run ``fn(job, stop)`` for every job; ``on_result(job, result, progress_text)`` as each ends.

        ``shared_dir``: a folder every worker can see (on Dask, the stop request travels as a
        file there: no extra connections from the workers, which works on any cluster).
        ``costs``: relative costs of the jobs, for the ETA (default: all equal).
        """
        jobs = list(jobs)
        if not jobs:
            return
        clock = BatchEta(jobs, costs)
        if self.kind == "dask":
            if shared_dir is None:
                raise ValueError("the Dask executor needs a shared folder for its stop requests")
            self._map_dask(fn, jobs, on_result, clock, Path(shared_dir))
        else:
            self._map_local(fn, jobs, on_result, clock)

    def _map_local(self, fn, jobs, on_result, clock):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed, wait
        # spawn, not fork: forking a process whose OpenMP threads (numba's) are running is unsafe
        ctx = multiprocessing.get_context("spawn")
        stop_event = ctx.Event()  # set on Ctrl-C: running tasks commit and stop, queued ones do not start
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(jobs)), mp_context=ctx,
                                   initializer=_worker_init, initargs=(os.getpid(), stop_event))
        futures = {pool.submit(_local_task, fn, job): job for job in jobs}
        try:
            for fut in as_completed(futures):
                on_result(futures[fut], _result(fut), clock.tick(futures[fut]))
        except KeyboardInterrupt:
            stop_event.set()
            for fut in futures:
                fut.cancel()  # the queued ones (a task already handed to a worker sees the event)
            running = [f for f in futures if not f.done()]
            wait(running, timeout=STOP_GRACE)
            for fut in running:
                if fut.done() and not fut.cancelled() and not _result(fut)["status"].startswith("not started"):
                    on_result(futures[fut], _result(fut), "")
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

    def _map_dask(self, fn, jobs, on_result, clock, shared_dir: Path):
        import uuid

        from dask.distributed import as_completed, wait
        stop_file = shared_dir / f".stop-{uuid.uuid4().hex}"
        futures = self.client.map(_dask_task, [fn] * len(jobs), jobs, [str(stop_file)] * len(jobs), pure=False)
        by_key = {f.key: job for f, job in zip(futures, jobs)}
        try:
            for fut in as_completed(futures):
                on_result(by_key[fut.key], _result(fut), clock.tick(by_key[fut.key]))
        except KeyboardInterrupt:
            # Dask cannot tell a queued task from a running one, and cancelling a running one
            # would leave its run half-committed: every task sees the stop file instead (queued
            # ones return at once, running ones at their next commit) and is awaited.
            stop_file.touch()
            pending = [f for f in futures if not f.done()]
            try:
                wait(pending, timeout=STOP_GRACE)
            except Exception:  # noqa: BLE001 - a timeout only means a task did not answer in time
                pass
            for fut in pending:
                if fut.status == "finished" and not _result(fut)["status"].startswith("not started"):
                    on_result(by_key[fut.key], _result(fut), "")
            self.client.cancel([f for f in futures if not f.done()])
            raise
        finally:
            try:
                stop_file.unlink()
            except OSError:
                pass


def _result(fut) -> dict:
    """A task's record, or a failure record that names the error (never a traceback)."""
    try:
        return fut.result()
    except Exception as exc:  # noqa: BLE001 - every failure of one task becomes its row
        return {"status": f"failed: {type(exc).__name__}: {exc}"}


class BatchEta:
    """Overall progress of a batch of tasks: done/total, elapsed, and an ETA weighted by the
    jobs' relative costs (so that a batch that starts with its costliest jobs is not
    predicted to take forever)."""

    def __init__(self, jobs, costs=None):
        costs = [1.0] * len(jobs) if costs is None else [float(c) for c in costs]
        self.cost = {id(j): c for j, c in zip(jobs, costs)}
        self.total, self.done_cost, self.t0 = sum(costs) or 1.0, 0.0, time.monotonic()

    def tick(self, job) -> str:
        from .progress import fmt_seconds
        self.done_cost += self.cost.get(id(job), 0.0)
        elapsed = time.monotonic() - self.t0
        left = self.total - self.done_cost
        eta = f", ETA {fmt_seconds(elapsed / self.done_cost * left)}" if left > 1e-9 and self.done_cost > 0 else ""
        return f" (elapsed {fmt_seconds(elapsed)}{eta})"


# ----------------------------------------------------------------- inside the workers
_STOP = None  # the driver's stop event, in a local worker


def _worker_init(driver_pid: int, stop_event):
    """Local worker start-up: single-threaded numba, Ctrl-C ignored while idle, the driver's
    stop event, and a watchdog that ends the worker when its driver is gone (even after a
    SIGKILL)."""
    global _STOP
    import numba
    numba.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _STOP = stop_event

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != driver_pid:
                os._exit(3)
    threading.Thread(target=watch, daemon=True, name="mlpsim-watchdog").start()


def _local_task(fn, job):
    """Run one task with Ctrl-C enabled: the first SIGINT (or the driver's stop event) stops
    the task, which commits; a later SIGINT is ignored, so it cannot interrupt that commit."""
    if _STOP is not None and _STOP.is_set():
        return {"status": "not started (stopped)"}

    def first_interrupt(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, first_interrupt)
    try:
        return fn(job, None if _STOP is None else _STOP.is_set)
    except KeyboardInterrupt:
        return {"status": "interrupted"}
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _dask_task(fn, job, stop_file):
    """Run one task on a Dask worker, single-threaded, stopping when the driver's stop file appears."""
    import numba
    numba.set_num_threads(1)

    def stop() -> bool:
        return os.path.exists(stop_file)
    if stop():
        return {"status": "not started (stopped)"}
    try:
        return fn(job, stop)
    except KeyboardInterrupt:
        return {"status": "interrupted"}
