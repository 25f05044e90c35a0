"""Does the adaptive (AIMD) concurrency cap help against a queueing server?

    .venv/bin/python -m benchmarks.adaptive [--capacity 16] [--latency 1.0] [--concurrency 64]
        [--docs 192]

The mock server models vLLM under load: past `capacity` requests in flight, every request slows in
proportion. Compared: a fixed cap of 4 x concurrency per endpoint (effectively none) and the AIMD
cap. Printed: documents/s, LLM calls/s and call latency percentiles for each.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks.overhead import mock_server_process
from graph.run import main as run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=16)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--docs", type=int, default=192)
    args = parser.parse_args()
    for mode, flags in (
        ("fixed cap", ["--max-inflight", str(4 * args.concurrency)]),
        ("adaptive", ["--max-inflight", str(4 * args.concurrency), "--adaptive"]),
    ):
        with (
            tempfile.TemporaryDirectory() as tmp,
            mock_server_process(args.latency, "--capacity", str(args.capacity)) as url,
        ):
            out = Path(tmp) / "run"
            # the text protocol: the figures in docs/ were measured on it
            common = f"--docs {args.docs} --out {out} --base-url {url} --protocol text --quiet"
            run([*common.split(), "--concurrency", str(args.concurrency), *flags])
            m = json.loads((out / "manifest.json").read_text())
        lat = m["llm"]["by_role"]["conductor"]["latency_s"]
        print(
            f"{mode:<9}: {m['this_run']['tried'] / m['wall_seconds']:.2f} documents/s, "
            f"{m['llm']['calls'] / m['wall_seconds']:.1f} calls/s, conductor latency p50 "
            f"{lat['p50']} s, p90 {lat['p90']} s, p99 {lat['p99']} s, wall {m['wall_seconds']} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
