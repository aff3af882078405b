"""Run a sweep's notebooks on Dask: several at once on this machine, or on an existing cluster.

A run stays what it is in the sequential sweep (`sweep.run_one`: its own folder, a request record, an atomic
`metrics.json`, failures recorded, never raised); Dask only decides where and when each one runs. A worker that
dies loses only the run it held: that run is reported as failed, and the next `helpers.sweep` redoes it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

GPU_RESOURCE = "GPU"  # a worker started with `--resources GPU=1` runs one notebook at a time per GPU


def run_on_worker(notebook: Path, params: dict[str, Any], folder: Path, threads: int | None) -> dict[str, Any]:
    """Run one notebook on a Dask worker, its kernel given `threads` CPU threads (default: the worker's --nthreads).

    Dask pins each worker's numerical libraries to one thread; the notebook's kernel, started after this, inherits
    the setting made here instead.
    """
    from dask.distributed import get_worker

    from .sweep import run_one

    threads = threads or get_worker().nthreads
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    return run_one(notebook, params, folder)


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, gpus: int = 0) -> Iterator[Any]:
    """Yield a Dask client: a LocalCluster of `workers` processes, or a connection to `scheduler` (checked first)."""
    import dask
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="5s")
        except (OSError, TimeoutError) as error:
            raise ConnectionError(
                f"Cannot reach the Dask scheduler at {scheduler} ({error}). Check the address, start a cluster there "
                "(`dask scheduler`, then `dask worker ADDRESS` on each machine), or leave out --scheduler to run on "
                "this machine (--workers N).") from None
        with client:
            yield client
        return
    if not workers or workers < 1:
        raise ValueError(f"--workers must be a whole number >= 1, got {workers!r}")
    # A killed worker's run is reported as failed, never re-run elsewhere behind the user's back.
    settings = {"distributed.scheduler.allowed-failures": 0}
    cluster_options = {"n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": ":0",
                       "resources": {GPU_RESOURCE: gpus} if gpus else None, "silence_logs": logging.ERROR}
    with dask.config.set(settings), LocalCluster(**cluster_options) as cluster, Client(cluster) as client:
        yield client


def free_slots(client: Any, gpu: bool) -> int:
    """Count the runs the cluster can hold at once: its worker threads, or its GPU resources with `gpu`."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    slots = sum(w.get("resources", {}).get(GPU_RESOURCE, 0) if gpu else w["nthreads"] for w in workers)
    if slots < 1:
        needed = f"a worker started with --resources {GPU_RESOURCE}=1" if gpu else "a worker"
        raise ConnectionError(f"The Dask cluster has no room for a run: start {needed} (`dask worker ADDRESS`).")
    return int(slots)


def run_on_dask(notebook: Path, combinations: list[dict[str, Any]], folders: list[Path], client: Any,
                threads: int | None = None, gpu: bool = False) -> list[dict[str, Any]]:
    """Run every combination on the cluster, one run per free slot, with a progress bar; return results in order.

    Runs are handed out only as slots free up, so no run waits in a worker's queue: a worker that dies takes only the
    run it was executing with it.
    """
    from dask.distributed import as_completed

    from .sweep import finished, run_request

    if client.dashboard_link:
        print(f"Dask dashboard: {client.dashboard_link}", flush=True)
    waiting = list(enumerate(zip(combinations, folders, strict=True)))[::-1]
    numbers: dict[Any, int] = {}
    running = as_completed()

    def submit_next() -> None:
        """Hand the next waiting run to the cluster."""
        number, (params, folder) = waiting.pop()
        future = client.submit(run_on_worker, notebook, params, folder, threads, pure=False, key=f"run-{folder.name}",
                               resources={GPU_RESOURCE: 1} if gpu else None)
        numbers[future] = number
        running.add(future)

    for _ in range(min(free_slots(client, gpu), len(waiting))):
        submit_next()
    results: list[dict[str, Any] | None] = [None] * len(combinations)
    failed = 0
    with tqdm(total=len(combinations), desc="sweep", unit=" run") as bar:
        for future in running:
            number = numbers[future]
            try:
                result = future.result()
            except Exception as error:  # the worker died (KilledWorker) or could not run the task at all
                result = {"params": combinations[number], "folder": str(folders[number]), "seconds": None,
                          "status": f"failed: {type(error).__name__}: the worker running it died or could not run it; "
                                    "run the sweep again to redo it"}
                if finished(folders[number], run_request(notebook, combinations[number])):  # died after the run
                    result["status"] = "ok"  # the records on disk are complete; only the returned summary was lost
            if waiting:
                submit_next()
            results[number] = result
            failed += result["status"].startswith("failed")
            bar.update()
            bar.set_postfix(done=bar.n - failed, failed=failed, in_flight=bar.total - bar.n - len(waiting))
    return results
