"""Protocol success, wall time and tokens per document for each conductor protocol, with and without
grammars, against the template baseline, on one model (the embedded default unless --model).

    .venv/bin/python -m benchmarks.protocols [--docs 5] [--model embedded:qwen2.5-coder-0.5b]
        [--configs structured text structured-off text-off template] [--out runs/bench-protocols]
        [--domain finance] [--seed 0] [--time-limit SECONDS]

Each configuration is a real `graph.run` into its own directory (same seeds), read back from its
manifest and corpus. Prints one row per configuration; the last column is wall time per document
relative to `template` when it is in the list.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path

from memory import quality

CONFIGS = {
    "structured": ["--protocol", "structured"],
    "structured-off": ["--protocol", "structured", "--constrain", "off"],
    # one review per draft (off by default)
    "structured-review": ["--protocol", "structured", "--reviews", "1"],
    "text": ["--protocol", "text"],
    "text-off": ["--protocol", "text", "--constrain", "off"],
    "template": ["--method", "template"],
}


def run(
    name: str,
    docs: int,
    out: Path,
    extra: list[str],
    domain: str = "finance",
    time_limit: float | None = None,
) -> dict:
    target = out / name
    command = [
        sys.executable,
        "-m",
        "graph.run",
        "--domain",
        domain,
        "--docs",
        str(docs),
        "--max-attempts",
        str(docs),
        "--out",
        str(target),
        "--overwrite",
        "--quiet",
        *CONFIGS[name],
        *extra,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=time_limit)
    except subprocess.TimeoutExpired:  # the run stops, its manifest says what it did
        # SIGTERM, not SIGINT: a shell's background job (nohup ... &) ignores SIGINT, and so
        # would the run; graph.run stops on SIGTERM as on Ctrl-C.
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate()
    done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    if done.returncode not in (0, 1, 130, 143):
        raise SystemExit(f"{name}: exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    manifest = json.loads((target / "manifest.json").read_text())
    corpus = target / "corpus.jsonl"
    records = (
        [json.loads(line) for line in corpus.read_text().splitlines()] if corpus.exists() else []
    )
    roles = manifest["llm"]["by_role"]
    tried = manifest["this_run"]["tried"] or 1
    committed = max(1, len(records))
    gates = manifest.get("gates", {})
    return {
        "config": name,
        "interrupted": manifest.get("interrupted", False),
        "tried": manifest["this_run"]["tried"],
        "final": manifest["this_run"]["final"],
        "fallback": manifest["this_run"].get("fallback", 0),
        "rejected": manifest["this_run"]["rejected"],
        "success": manifest.get("protocol_success_rate"),
        "grammar": manifest.get("grammar", {}).get("conductor"),
        "s_per_doc": manifest["wall_seconds"] / tried,
        "prompt_tok_per_doc": sum(r["prompt_tokens"] for r in roles.values()) / tried,
        "completion_tok_per_doc": sum(r["completion_tokens"] for r in roles.values()) / tried,
        "calls_per_doc": sum(r["calls"] for r in roles.values()) / tried,
        "corpus_tokens_per_doc": sum(r["tokens"] for r in records) / committed,
        # Did the protocol run: committed documents whose text came from the experts, and how many
        # experts each consulted (issue 21); what the quality gate refused (issue 20).
        "through_experts": sum(r.get("written_by") == "experts" for r in records) / committed,
        "experts_per_doc": sum(len(r.get("experts") or []) for r in records) / committed,
        "quality_refused_share": gates.get("refused_by_reason", {}).get(quality.REFUSED, 0)
        / max(1, gates.get("drafts_checked") or 0),
        "rejected_low_quality": sum(gates.get("rejected_low_quality_by_rule", {}).values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=5)
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=CONFIGS,
        default=["structured", "structured-off", "text", "text-off", "template"],
    )
    parser.add_argument(
        "--model", help="e.g. embedded:qwen2.5-coder-0.5b (default: the embedded default)"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench-protocols"))
    parser.add_argument("--domain", default="finance")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--time-limit",
        type=float,
        help="seconds per configuration; past it the run is stopped (SIGTERM) and reported as "
        "far as it got",
    )
    args = parser.parse_args()
    extra = (["--model", args.model] if args.model else []) + ["--seed", str(args.seed)]
    rows = []
    for name in args.configs:
        rows.append(run(name, args.docs, args.out, extra, args.domain, args.time_limit))
        print(json.dumps(rows[-1]), flush=True)
    base = next((r["s_per_doc"] for r in rows if r["config"] == "template"), None)
    print(
        f"\n{'config':<20} {'success':>7} {'final/tried':>11} {'s/doc':>7} {'x tmpl':>6} "
        f"{'prompt/doc':>10} {'compl/doc':>9} {'calls/doc':>9} {'doc tokens':>10} {'experts':>7} "
        f"{'exp/doc':>7} {'q-refused':>9} {'q-rej':>5}  grammar"
    )
    for r in rows:
        ratio = f"{r['s_per_doc'] / base:.2f}" if base else "-"
        success = "-" if r["success"] is None else f"{r['success']:.2f}"
        print(
            f"{r['config']:<20} {success:>7} {r['final']:>5}/{r['tried']:<5} "
            f"{r['s_per_doc']:>7.1f} {ratio:>6} {r['prompt_tok_per_doc']:>10.0f} "
            f"{r['completion_tok_per_doc']:>9.0f} {r['calls_per_doc']:>9.1f} "
            f"{r['corpus_tokens_per_doc']:>10.0f} {r['through_experts']:>7.2f} "
            f"{r['experts_per_doc']:>7.1f} {r['quality_refused_share']:>9.2f} "
            f"{r['rejected_low_quality']:>5}  {r['grammar']}"
        )


if __name__ == "__main__":
    main()
