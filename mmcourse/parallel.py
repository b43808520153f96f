"""Independent trainings in parallel processes, one thread each, with the serial run's results.

A cell that trains a grid (methods × seeds) on a CPU runs faster as separate *processes* than as
one process with several threads: the course's small convolutions do not split well across
threads (measured on 2 cores: 2 processes × 1 thread gave 1.7–2.0× the throughput of the serial
run, 2 threads in one process 1.0–1.15×; ``benchmarks/train_grid.py`` measures it on your
machine). ``run_many`` sends each job to a worker process that uses one torch thread, and returns
the results in job order.

Determinism: every job runs with one torch thread, in a worker or (``workers=1``) in this
process, and seeds itself (``zoo.run`` calls ``seed_everything``), so the results are identical to
running the jobs one after another with one thread, whatever the number of workers (tested).

On a GPU the jobs run one after another in this process: the GPU is already parallel, and
several processes would each hold a CUDA context.

Workers start with ``spawn`` (a fresh interpreter): forking a process whose OpenMP threads are
running can deadlock. So ``fn`` must be importable by name — a function of a module, such as
``mmcourse.fusion.zoo.run`` — not one defined in a notebook cell.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, redirect_stdout
from typing import Callable

import torch


def available_cpus() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_workers(n_jobs: int, device: str = "cpu") -> int:
    """One worker per core, no more than jobs; one (this process) on a GPU."""
    if device != "cpu":
        return 1
    return max(1, min(n_jobs, available_cpus()))


@contextmanager
def one_thread():
    """Run the body with one torch thread, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)


def _call(fn: Callable, kwargs: dict) -> tuple[object, str]:
    """``fn(**kwargs)`` and what it printed (returned, not printed: see ``_print_once``)."""
    out = io.StringIO()
    try:
        with redirect_stdout(out):
            result = fn(**kwargs)
    except BaseException:
        print(out.getvalue(), end="")  # a failing job's own lines explain it: show them now
        raise
    return result, out.getvalue()


def _print_once(texts: list[str]) -> None:
    """Print the jobs' lines in job order, each distinct line once, with how many jobs printed it.

    Workers' prints would otherwise reach the cell in completion order, one copy per job (eight
    deployers loading one base printed the same line eight times)."""
    counts: dict[str, int] = {}
    for text in texts:
        for line in dict.fromkeys(text.splitlines()):  # a job's repeated line counts once
            counts[line] = counts.get(line, 0) + 1
    for line, n in counts.items():
        if line.strip():
            print(line if n == 1 else f"{line}  [{n} jobs]")


def _label(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if isinstance(v, (str, int, float, bool)))


def run_many(fn: Callable, jobs: list[dict], workers: int | None = None, device: str = "cpu",
             desc: str = "trainings", progress: bool = True) -> list:
    """``[fn(**job) for job in jobs]``, computed in ``workers`` processes with one thread each.

    Args:
        fn: a module-level function (picklable by name), e.g. ``mmcourse.fusion.zoo.run``.
        jobs: one dict of keyword arguments per call; tensors in them are shared with the workers.
        workers: processes to use; ``None``: one per CPU core (at most one per job), and 1 on a
            GPU (``device`` not ``"cpu"``). ``1`` runs the jobs here, one after another.
        desc: the progress bar's label.

    Returns:
        ``fn``'s results, in the order of ``jobs``. What the jobs print is printed after the bar,
        in job order, each distinct line once (``[8 jobs]`` when eight jobs printed it).

    Raises:
        RuntimeError: a job raised (the message names the job and keeps the original error as
            the cause), or a worker process died (e.g. killed for memory), naming the jobs that
            were lost and the fix.
    """
    if not callable(fn):
        raise TypeError(f"fn must be a function, got {type(fn).__name__}")
    if not isinstance(jobs, (list, tuple)) or not all(isinstance(j, dict) for j in jobs):
        raise TypeError("jobs must be a list of dicts of keyword arguments, e.g. [{'seed': 0}, {'seed': 1}]")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers={workers!r}: use None (one per core) or an integer >= 1")
    if not jobs:
        return []
    workers = workers or default_workers(len(jobs), device)
    bar = _bar(len(jobs), desc, progress)
    results: list = [None] * len(jobs)
    printed: list[str] = [""] * len(jobs)
    try:
        if workers == 1:
            with one_thread():
                for i, job in enumerate(jobs):
                    results[i], printed[i] = _run_here(fn, job)
                    bar.update(1)
            return results
        ctx = torch.multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx,
                                 initializer=_init_worker) as pool:
            futures = {pool.submit(_call, fn, job): i for i, job in enumerate(jobs)}
            for future in as_completed(futures):
                i = futures[future]
                try:
                    results[i], printed[i] = future.result()
                except BrokenProcessPool as e:
                    lost = [_label(jobs[j]) for f, j in futures.items() if not f.done() or f.exception()]
                    raise RuntimeError(
                        f"a worker process died while training ({len(lost)} job(s) lost, e.g. "
                        f"{lost[0] if lost else '?'}): usually the machine ran out of memory. Run with "
                        "fewer workers (workers=1 runs in this process and shows the error). From a script, "
                        "also check that the code calling run_many sits under `if __name__ == \"__main__\":` "
                        "(each worker imports the script again; without it the workers fail to start)") from e
                except Exception as e:
                    raise RuntimeError(f"job {i} ({_label(jobs[i])}) failed: {type(e).__name__}: {e}") from e
                bar.update(1)
        return results
    finally:
        bar.close()
        _print_once(printed)


def _run_here(fn: Callable, job: dict) -> tuple[object, str]:
    try:
        return _call(fn, job)
    except Exception as e:
        raise RuntimeError(f"job ({_label(job)}) failed: {type(e).__name__}: {e}") from e


def _bar(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, leave=False)
