"""`graph.run --workers N`: documents written by N Ray actors, one memory owner for the corpus.

Each worker is a process with its own event loop, compiled graph and Run (graph/session.py: the
prompts, the routers, the embedder), built there as in one process, with the shared memory in
place of its own; it embeds and quality-checks its own drafts. The
corpus's memory lives in one actor on the driver's node (memory/remote.py), so the novelty gate
sees every committed document. The driver (graph.run) keeps everything else one process does:
budgets, the progress display, failures.jsonl, the manifest, the run directory's lock.

Ray restarts a worker that dies and runs its documents in flight again (RESTARTS times); the memory
owner hands a retried document its first commit, so nothing is doubled. Without `--ray-address`
Ray starts a cluster on this machine for the run (no dashboard; Ray's token authentication, on by
default, guards its ports) and stops it after;
with one, the run's actors end when the driver disconnects or dies (Ray's ownership: no detached
actors).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

from agents.calls import Accounting
from core.errors import UserError
from core.usage import cpu_seconds
from graph.driver import failure_record, graph_for, write_document
from graph.servers import Endpoints
from graph.session import build_run, prompts_for, run_dir
from memory.remote import ATTEMPT, MemoryOwner, RemoteMemory

RESTARTS = 3  # per worker: a worker that keeps dying (out of memory) ends in failed documents


class Worker:
    """One process's share of the run's documents."""

    def __init__(self, settings, method: str, owner) -> None:
        import torch

        torch.set_num_threads(1)  # as in one process: the embedder leaves a core to the event loop
        memory = RemoteMemory(owner, run_dir(settings))
        # Built before any document (the embedder and the tokenizer load here: models imported
        # from several threads at once fail), so the run's clock starts once every worker is ready.
        endpoints = Endpoints.resolve(settings)
        self.run = build_run(settings, prompts_for(settings), endpoints, Accounting(), memory)
        self.run.ready()
        self.memory, self.graph = memory, graph_for(method)

    async def document(self, index: int) -> dict:
        ATTEMPT.set(index)  # the owner's key for this document's commit (memory/remote.py)
        # Run again after a worker died: if it had committed, that commit is the document.
        done = await asyncio.to_thread(self.memory.committed, index)
        return done or await write_document(self.graph, self.run, index)

    def accounting(self) -> Accounting:
        return self.run.accounting

    def pid(self) -> int:
        return os.getpid()

    def cpu_seconds(self) -> float:
        return cpu_seconds()


def worker_settings(settings, base_url: str):
    """The run's settings as a worker on any node reads them: absolute paths, and the driver's
    embedded server (when it runs one) addressed like any served model."""

    def absolute(path: str) -> str:
        return str(Path(path).resolve()) if path else path

    paths = {"out_dir": absolute(settings.out_dir), "prompts_dir": absolute(settings.prompts_dir)}
    if hasattr(settings, "seed_docs"):
        paths["seed_docs"] = absolute(settings.seed_docs)
    if Path(settings.tokenizer).exists():
        paths["tokenizer"] = absolute(settings.tokenizer)
    return replace(settings, **paths, base_url=settings.base_url or base_url)


class Workers:
    """The memory owner and `count` workers on a Ray cluster, for the life of one run."""

    def __init__(
        self, settings, method: str, count: int, address: str, embedded_url: str = ""
    ) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray = ray
        # A new local cluster has no dashboard; its ports ask for the token Ray generates.
        ray.init(
            address=address or "local",  # "local": a new cluster, never one RAY_ADDRESS names
            include_dashboard=None if address else False,
            log_to_driver=False,
            logging_level="WARNING",
        )
        self.address = address or "local"
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if count > cpus:
            ray.shutdown()
            raise UserError(f"--workers {count} needs {count} CPUs; the Ray cluster has {cpus}")
        directory = str(run_dir(settings))
        # The owner writes the run directory: it runs where the driver (and the directory) is.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.owner = (
            ray.remote(MemoryOwner)
            .options(num_cpus=0, scheduling_strategy=here)
            .remote(directory, settings.domain, settings.index)
        )
        self.memory = RemoteMemory(self.owner, directory)
        len(self.memory)  # waits for the owner to load the corpus (and surfaces its errors here)
        remote = worker_settings(settings, embedded_url)
        actor = ray.remote(Worker).options(
            num_cpus=1, max_restarts=RESTARTS, max_task_retries=RESTARTS, max_concurrency=1000
        )
        self.workers = [actor.remote(remote, method, self.owner) for _ in range(count)]
        self.load = [0] * count
        self.alive = set(range(count))  # workers that have not used up their restarts
        self.started = self.pids()  # every worker is up (its errors surface here, not mid-run)
        self.cpu_at_start = self.cpu_seconds()

    async def write(self, index: int) -> dict:
        """Document `index` on the least busy worker: its record, or its failure record. A worker
        gone for good hands its document to another one (the owner keeps a commit it made)."""
        while self.alive:
            slot = min(self.alive, key=self.load.__getitem__)
            self.load[slot] += 1
            ref = self.workers[slot].document.remote(index)
            try:
                return await ref
            except asyncio.CancelledError:  # the run is ending: stop the document where it runs
                self.ray.cancel(ref)
                raise
            except self.ray.exceptions.ActorDiedError:
                self.alive.discard(slot)
            except self.ray.exceptions.RayError as e:  # Ray itself failed this document
                return failure_record(index, e)
            finally:
                self.load[slot] -= 1
        return failure_record(index, RuntimeError(f"every worker died {RESTARTS + 1} times"))

    def pids(self) -> dict[int, int]:
        """The process id of each worker still alive, by its place in the pool."""
        slots = sorted(self.alive)
        return dict(zip(slots, self.ray.get([self.workers[i].pid.remote() for i in slots])))

    def cpu_seconds(self) -> float:
        """CPU seconds the workers and the owner have used (a restarted worker's from its restart:
        the benchmarks' client CPU per call)."""
        parts = [w.cpu_seconds.remote() for w in self.workers] + [self.owner.cpu_seconds.remote()]
        return sum(self.ray.get(parts, timeout=30))

    def finish(self) -> tuple[Accounting, dict]:
        """Seal the memory (a document still running on a worker after Ctrl-C can no longer
        commit, so the manifest counts what is on disk), merge the workers' accounting and what
        the run cost them, then stop the workers. Calls a restarted worker made before it died
        are not counted."""
        ray, total, figures = self.ray, Accounting(), {"count": len(self.workers)}
        figures["ray"] = self.address
        try:
            figures["admits"] = ray.get(self.owner.seal.remote(), timeout=60)
            now = self.pids()  # a worker restarted by Ray runs in a new process
            figures["restarted"] = sum(now.get(i) != pid for i, pid in self.started.items())
            # the workers' and the owner's, after start-up
            figures["cpu_seconds"] = round(self.cpu_seconds() - self.cpu_at_start, 2)
        except ray.exceptions.RayError as e:  # the figures are lost, never the manifest
            figures["error"] = f"{type(e).__name__}: {e}"[:300]
        for worker in self.workers:
            try:
                total.add(ray.get(worker.accounting.remote(), timeout=30))
            except ray.exceptions.RayError:
                pass
            ray.kill(worker, no_restart=True)
        return total, figures

    def close(self) -> None:
        self.ray.shutdown()
