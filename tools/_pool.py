"""Worker processes for the benchmark tools: each unit of work runs in a spawned single-threaded
process (TensorFlow and LiteRT each on one core), and a unit's stored result is reused while its key
(a hash of everything that decides it) is unchanged, so an interrupted run continues where it stopped."""
import json
import multiprocessing
import os
import pathlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any


def _exit_with_parent(parent: int, every_s: float = 2.0) -> None:
    """A worker whose parent was killed (e.g. SIGKILL, which the pool cannot see) stops too, instead of
    finishing its unit and overwriting a stored result after the run was abandoned."""
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(1)


def init_worker() -> None:
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    from absl import logging
    logging.set_verbosity(logging.WARNING)  # the TFLite converter logs every conversion at INFO
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")  # retracing notes of Model.predict on every new episode
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def stored(path: str | pathlib.Path, key: str) -> dict | None:
    """The result stored at `path` if it was made for `key`."""
    path = pathlib.Path(path)
    if path.exists():
        res = json.loads(path.read_text())
        if res.get("key") == key:
            return res
    return None


def run_all(todo: Sequence[Any], work: Callable[..., dict], args: Callable[[Any], tuple], jobs: int,
            on_result: Callable[[int, Any, dict], None]) -> None:
    """work(*args(unit)) for each unit, in this process (jobs=1) or in `jobs` spawned workers;
    on_result(k, unit, result) as each finishes (k counts from 1). `work` must be importable."""
    if jobs == 1:
        for k, u in enumerate(todo, 1):
            on_result(k, u, work(*args(u)))
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=init_worker) as pool:
        futures = {pool.submit(work, *args(u)): u for u in todo}
        for k, fut in enumerate(as_completed(futures), 1):
            on_result(k, futures[fut], fut.result())


def run_units(units: Sequence[Any], root: pathlib.Path, phase: str, jobs: int, work: Callable[..., dict],
              cache: str | None, describe: Callable[[Any, dict], str]) -> dict:
    """Every unit's result: stored ones reused (unit.path(root), unit.key()), the rest run by
    work(unit, out_path, cache) with a progress line each (describe(unit, result), elapsed, ETA)."""
    done = {u: r for u in units if (r := stored(u.path(root), u.key())) is not None}
    todo = [u for u in units if u not in done]
    print(f"{phase}: {len(units)} units, {len(done)} reused, {len(todo)} to run on {jobs} worker(s)", flush=True)
    t0 = time.time()

    def report(k: int, u: Any, res: dict) -> None:
        done[u] = res
        eta = (time.time() - t0) / k * (len(todo) - k)
        print(f"[{phase} {k}/{len(todo)}] {describe(u, res)} ({time.time() - t0:.0f} s elapsed, ~{eta:.0f} s left)",
              flush=True)

    run_all(todo, work, lambda u: (u, str(u.path(root)), cache), jobs, report)
    return done
