"""llama.cpp's own server (parallel slots, continuous batching) from the prebuilt `xllamacpp` \
wheel: no
compile at install, unlike llama-cpp-python. Run as a child process by agents.embedded:

    python -m agents.xllama MODEL.gguf --port PORT --alias NAME --parallel 4 --ctx 8192 --threads 2

`--ctx` is per request; llama.cpp splits its total context across the slots, so it gets ctx ×
parallel. Loopback only, no web UI, no server-side tools.
"""

from __future__ import annotations

import argparse
import signal
import threading


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--alias", default="")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--ctx", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    if args.alias:
        params.model_alias = {args.alias}
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    params.n_parallel = args.parallel
    params.n_ctx = args.ctx * args.parallel
    params.cont_batching = True
    params.ui = False
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = args.threads
    server = xllamacpp.Server(params)  # serves from its own threads while this object lives
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"listening on 127.0.0.1:{args.port} with {args.parallel} slots", flush=True)
    stop.wait()
    del server


if __name__ == "__main__":
    main()
