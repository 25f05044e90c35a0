"""Orchestration overhead: LLM calls/s achieved against the mock server with fixed latency L, with C
documents in flight, divided by the ideal C / L (each document always waiting on one call).

    .venv/bin/python -m benchmarks.overhead [--latency 1.0] [--concurrency 64] [--docs 320]
        [--workers 0 1 2]   (0: one process without Ray; N: graph.run --workers N)

The mock server runs in its own process, as a real server would (sharing this process's GIL would
charge the server's work to the client). Also prints the client's CPU seconds per LLM call (graph,
HTTP client, embeddings, commits).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from agents.embedded import free_port
from core.usage import cpu_seconds
from graph.run import main as run


@contextmanager
def mock_server_process(latency: float, *extra: str):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.mock_server",
            "--port",
            str(port),
            "--latency",
            str(latency),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(100):
            try:
                httpx.get(url + "/models", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--docs", type=int, default=320)
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[0],
        help="0: one process without Ray; N: graph.run --workers N on a local Ray cluster",
    )
    args = parser.parse_args()
    for latency in args.latency:
        for workers in args.workers:
            measure(latency, workers, args)


def measure(latency: float, workers: int, args) -> None:
    with tempfile.TemporaryDirectory() as tmp, mock_server_process(latency) as url:
        out = Path(tmp) / "run"
        cpu0 = cpu_seconds()
        # the text protocol: the figures in docs/ were measured on it
        flags = f"--docs {args.docs} --out {out} --base-url {url} --protocol text --quiet"
        flags += f" --concurrency {args.concurrency} --max-inflight {4 * args.concurrency}"
        code = run([*flags.split(), *(["--workers", str(workers)] if workers else [])])
        driver_cpu = cpu_seconds() - cpu0
        manifest = json.loads((out / "manifest.json").read_text())
    llm = manifest["llm"]
    # Experts of one turn run in parallel, so a document can have 2 calls in flight; the ideal
    # counts one call per document in flight, as the goal states.
    ideal = args.concurrency / latency
    achieved = llm["calls"] / manifest["wall_seconds"]
    label = f"{workers} Ray workers" if workers else "one process, no Ray"
    print(
        f"[{label}] exit {code}; {manifest['documents_in_corpus']} documents, {llm['calls']} LLM "
        f"calls in {manifest['wall_seconds']} s"
    )
    print(
        f"  latency L = {latency} s, C = {args.concurrency}: {achieved:.1f} calls/s, ideal C/L "
        f"= {ideal:.1f}, ratio {achieved / ideal:.3f}"
    )
    # Stricter: a mock document is 3 sequential latencies (conductor, two parallel experts,
    # conductor).
    steps = 3
    docs_per_s = manifest["this_run"]["tried"] / manifest["wall_seconds"]
    print(
        f"  documents/s {docs_per_s:.2f}, ideal C/(3L) = "
        f"{args.concurrency / (steps * latency):.2f}, ratio "
        f"{docs_per_s / (args.concurrency / (steps * latency)):.3f} (includes ramp-up and the "
        "last wave)"
    )
    for role, stats in llm["by_role"].items():
        print(f"  {role}: {stats['calls']} calls, latency {stats['latency_s']}")
    spread = manifest.get("workers")
    if spread:  # the driver's CPU includes Ray's start-up; the workers' starts after theirs
        remote = spread["cpu_seconds"] or 0.0
        print(
            f"  client CPU per LLM call: {1000 * (driver_cpu + remote) / llm['calls']:.1f} ms "
            f"(driver {1000 * driver_cpu / llm['calls']:.1f}, workers and memory owner "
            f"{1000 * remote / llm['calls']:.1f}); calls/s per worker {achieved / workers:.1f}"
        )
        print(f"  memory owner admits: {spread['admits']}")
    else:
        print(
            f"  client CPU per LLM call: {1000 * driver_cpu / llm['calls']:.1f} ms (client process "
            "only)"
        )


if __name__ == "__main__":
    main()
