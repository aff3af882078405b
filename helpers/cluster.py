"""Run a sweep's notebooks on Dask: several at once on this machine, or on an existing cluster.

A run stays what it is in the sequential sweep (`runs.run_one`: its own folder, a request record, an atomic
`metrics.json`, failures recorded, never raised); Dask only decides where and when each one runs. A worker that
dies loses only the run it held: that run is reported as failed, and the next `helpers.sweep` redoes it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .progress import progress_bar
from .runs import THREAD_VARIABLES, finished, run_one, run_request

GPU_RESOURCE = "GPU"  # a worker started with `--resources GPU=1` runs one notebook at a time per GPU
CONNECT_SECONDS = 10.0  # the most a wrong --scheduler address may take to be named


def scheduler_problem(address: str, seconds: float = CONNECT_SECONDS) -> str | None:
    """Ask `address` for a Dask scheduler's identity within `seconds`; say what went wrong, or None if it answered.

    The Client's own timeout covers only the TCP connection, not the handshake after it: a server that accepts and then
    says nothing (an HTTP server, such as the dashboard's port) holds it forever, and one that says something else has
    its bytes read as a message length (a 3 EiB allocation). The question is asked on a thread of its own, so no reply,
    any reply and any error all end by the deadline.
    """
    from distributed.comm import connect
    from distributed.security import Security

    async def identity() -> object:
        """Connect, shake hands and ask who is there."""
        comm = await connect(address, timeout=seconds / 2,  # a refused connection is retried for half the time
                             **Security().get_connection_args("client"))  # TLS settings from the Dask config
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    outcome: dict[str, object] = {}

    def ask() -> None:
        """Run the question on a fresh event loop, keeping its reply or error."""
        try:
            outcome["reply"] = asyncio.run(asyncio.wait_for(identity(), seconds))
        except TimeoutError:
            outcome["error"] = f"no answer within {seconds:.0f} s"
        except Exception as error:  # OSError, CommClosedError, MemoryError, ValueError...: all a no
            outcome["error"] = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__

    thread = threading.Thread(target=ask, name=f"probe {address}", daemon=True)
    thread.start()
    thread.join(seconds + 2)
    reply = outcome.get("reply")
    if isinstance(reply, dict) and reply.get("type") == "Scheduler":
        return None
    if "error" in outcome:
        return str(outcome["error"])
    if thread.is_alive() or "reply" not in outcome:
        return f"no answer within {seconds:.0f} s"
    return f"it answered as a {reply.get('type') if isinstance(reply, dict) else type(reply).__name__}, not a scheduler"


def run_on_worker(notebook: Path, params: dict[str, Any], folder: Path, threads: int | None) -> dict[str, Any]:
    """Run one notebook on a Dask worker, its kernel given `threads` CPU threads (default: the worker's --nthreads).

    Dask pins each worker's numerical libraries to one thread; the notebook's kernel, started after this, inherits
    the setting made here instead.
    """
    from dask.distributed import get_worker

    threads = threads or get_worker().nthreads
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    return run_one(notebook, params, folder)


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, gpus: int = 0) -> Iterator[Any]:
    """Yield a Dask client: a LocalCluster of `workers` processes, or a connection to `scheduler` (checked first)."""
    import dask
    from dask.distributed import Client, LocalCluster

    if scheduler:
        problem = scheduler_problem(scheduler)
        if problem is None:
            try:
                client = Client(scheduler, timeout="5s")
            except (OSError, TimeoutError, ValueError, MemoryError) as error:  # CommClosedError is an OSError
                problem = f"{type(error).__name__}: {error}"
        if problem is not None:
            raise ConnectionError(
                f"Cannot reach the Dask scheduler at {scheduler} ({problem}). Check the address (the scheduler "
                "listens on port 8786 by default; 8787 is its dashboard, not the scheduler), start a cluster there "
                "(`dask scheduler`, then `dask worker ADDRESS` on each machine), or leave out --scheduler to run on "
                "this machine (--workers N).")
        with client:
            yield client
        return
    if not workers or workers < 1:
        raise ValueError(f"--workers must be a whole number >= 1, got {workers!r}")
    # A killed worker's run is reported as failed, never re-run elsewhere behind the user's back.
    settings = {"distributed.scheduler.allowed-failures": 0}
    cluster_options = {"n_workers": workers, "threads_per_worker": 1, "processes": True,
                       "host": "127.0.0.1", "dashboard_address": "127.0.0.1:0",  # nothing listens beyond this machine
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
    with progress_bar(total=len(combinations), desc="sweep", unit=" run") as bar:
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
