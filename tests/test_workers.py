"""graph.run --workers: documents written by Ray actors on a local Ray cluster, one memory owner.

The runs are real subprocesses of the CLI (each starts its own local Ray cluster) against the mock
server; kills are real SIGKILLs of a Ray worker process or of the driver.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from benchmarks.mock_server import MockServer
from memory.embedder import DIM, default_embedder

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow

# Ray start-up and each worker's embedder load on 2 shared cores once took over 240 s (CI beside a
# generation run): generous, since only a hang should fail these waits.
FIRST_DOCS_S = 480


def command(out, url: str, docs: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "graph.run",
        "--docs",
        str(docs),
        "--out",
        str(out),
        "--base-url",
        url,
        "--workers",
        "2",
        "--concurrency",
        "4",
        "--quiet",
        *extra,
    ]


def corpus(out) -> list[dict]:
    path = out / "corpus.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def assert_consistent(out, docs: int) -> None:
    """Exactly `docs` committed documents with unique ids, and the novelty memory holds exactly
    their embeddings, in corpus order."""
    records = corpus(out)
    assert len(records) == docs
    assert len({r["id"] for r in records}) == docs
    assert len({r["text"] for r in records}) == docs
    stored = np.fromfile(out / "memory" / "embeddings.f32", dtype=np.float32).reshape(-1, DIM)
    assert len(stored) == docs
    again = default_embedder().encode([r["text"] for r in records])
    assert np.allclose(np.sum(stored * again, axis=1), 1.0, atol=1e-3)
    assert json.loads((out / "memory" / "index.json").read_text())["count"] == docs


def worker_pids() -> list[int]:
    """The run's workers: Ray names an actor's process after its class (no other Ray cluster runs
    during these tests; the `cluster` fixture's holds no Worker)."""
    found = subprocess.run(["pgrep", "-f", "ray::Worker"], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def test_two_workers_write_exactly_the_documents_asked_for(tmp_path):
    out = tmp_path / "run"
    with MockServer(latency=0.05) as url:
        done = subprocess.run(command(out, url, 10), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_consistent(out, 10)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["workers"]["count"] == 2 and manifest["workers"]["ray"] == "local"
    assert manifest["workers"]["admits"]["count"] == 10
    assert manifest["documents_in_corpus"] == 10 and manifest["this_run"]["failed"] == 0
    # the workers' accounting reached the manifest: every call of every document is counted
    calls = sum(u["calls"] for r in corpus(out) for u in r["usage"].values())
    assert manifest["llm"]["calls"] == calls > 0


def test_a_killed_worker_loses_nothing_and_doubles_nothing(tmp_path):
    out = tmp_path / "run"
    with MockServer(latency=0.3) as url:
        run = subprocess.Popen(command(out, url, 16), stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: len(corpus(out)) >= 3, FIRST_DOCS_S, "three documents")
            victims = worker_pids()
            assert victims, "no Ray worker process found"
            os.kill(victims[0], signal.SIGKILL)
            _, err = run.communicate(timeout=600)
        finally:
            run.kill()
    assert run.returncode == 0, err[-2000:]
    assert_consistent(out, 16)
    assert not (out / "failures.jsonl").exists()  # Ray ran the lost documents again
    assert json.loads((out / "manifest.json").read_text())["workers"]["restarted"] == 1


def test_a_killed_driver_resumes_to_the_target(tmp_path):
    out = tmp_path / "run"
    with MockServer(latency=0.3) as url:
        run = subprocess.Popen(command(out, url, 12), stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: len(corpus(out)) >= 3, FIRST_DOCS_S, "three documents")
            run.send_signal(signal.SIGKILL)
            run.wait(timeout=30)
        finally:
            run.kill()
        assert 3 <= len(corpus(out)) < 12
        done = subprocess.run(
            command(out, url, 12, "--resume"), capture_output=True, text=True, timeout=300
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert_consistent(out, 12)


@pytest.fixture
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_two_workers_admitting_the_same_document_at_once_commit_it_once(cluster, tmp_path):
    from memory.remote import MemoryOwner, RemoteMemory

    owner = ray.remote(MemoryOwner).remote(str(tmp_path), "doc", "flat")
    vector = default_embedder().encode(["The same document, written twice."])[0]
    start = time.time() + 3  # both tasks call admit at this moment, from their own processes

    @ray.remote(num_cpus=1)
    def write(owner, at: float) -> bool:
        memory = RemoteMemory(owner, tmp_path)
        time.sleep(max(0.0, at - time.time()))
        return memory.admit({"text": "The same document."}, vector, 0.85).accepted

    verdicts = ray.get([write.remote(owner, start), write.remote(owner, start)])
    assert sorted(verdicts) == [False, True]
    assert len(RemoteMemory(owner, tmp_path)) == 1
    assert len(corpus(tmp_path)) == 1


def test_a_retried_document_gets_its_first_commit_back(cluster, tmp_path):
    from memory.remote import MemoryOwner

    owner = ray.remote(MemoryOwner).remote(str(tmp_path), "doc", "flat")
    first, second = default_embedder().encode(["A ledger entry.", "A weather report in May."])
    one = ray.get(owner.admit.remote({"text": "A ledger entry."}, first, 0.85, 7))
    # the same attempt, rewritten after its worker died between the commit and the reply
    again = ray.get(owner.admit.remote({"text": "A weather report in May."}, second, 0.85, 7))
    assert one.accepted and again.record["id"] == one.record["id"]
    other = ray.get(owner.admit.remote({"text": "A weather report in May."}, second, 0.85, 8))
    assert other.accepted and other.record["id"] != one.record["id"]
    assert [r["id"] for r in corpus(tmp_path)] == [one.record["id"], other.record["id"]]
    # a worker that runs attempt 7 again asks first, and takes the commit instead of rewriting it
    assert ray.get(owner.committed.remote(7))["id"] == one.record["id"]
    assert ray.get(owner.committed.remote(9)) is None
    # sealed at the end of a run: a document still running on a worker commits nothing
    assert ray.get(owner.seal.remote())["count"] == 2
    with pytest.raises(ray.exceptions.RayTaskError, match="the run has ended"):
        ray.get(owner.admit.remote({"text": "Late."}, first * -1, 0.85, 10))
    ray.get(owner.reject.remote({"text": "Late."}))
    assert len(corpus(tmp_path)) == 2 and not (tmp_path / "rejects.jsonl").exists()
