"""What a finished (or interrupted) run reports: its summary, the manifest written beside its
corpus, and the command's exit status. Shared by graph.run and graph.instruct."""

from __future__ import annotations

import json
import platform
import sys
import time
from collections import Counter
from importlib import metadata
from pathlib import Path

from core.jsonl import write_atomic
from core.rundir import RunDir
from graph.settings import as_dict
from memory import quality

PACKAGES = (
    "langgraph",
    "langchain-core",
    "langchain-openai",
    "openai",
    "faiss-cpu",
    "sentence-transformers",
    "transformers",
    "xllamacpp",
    "datatrove",
    "torch",
)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def gate_stats(results: list[dict]) -> dict:
    """What the gates did to this run's drafts: every refusal (sent back, or the last one before a
    reject) by reason and by quality rule, and the documents rejected by rule."""
    refusals = [s for r in results for s in r.get("sent_back") or []]
    committed = sum(r.get("ended") in ("final", "fallback") for r in results)
    drafts = committed + len(refusals)
    rejected = [
        r for r in results if r.get("ended") == "rejected" and r.get("reason") == quality.REFUSED
    ]
    return {
        "drafts_checked": drafts,
        "refusals": len(refusals),
        "refused_share": round(len(refusals) / drafts, 3) if drafts else None,
        "refused_by_reason": dict(Counter(s["reason"] for s in refusals)),
        "refused_by_rule": dict(Counter(s["rule"] for s in refusals if s.get("rule"))),
        "rejected_low_quality_by_rule": dict(Counter(r.get("rule") for r in rejected)),
    }


def summarize(tally, accounting: dict, memory, job) -> dict:
    wall = time.perf_counter() - tally.started
    tried = len(tally.results)
    ended = {k: tally.count(k) for k in ("final", "fallback", "rejected", "failed")}
    roles = accounting["by_role"]
    prompt = sum(r["prompt_tokens"] for r in roles.values())
    completion = sum(r["completion_tokens"] for r in roles.values())
    calls = sum(r["calls"] for r in roles.values())
    return {
        "documents_in_corpus": len(memory),
        "corpus_tokens": memory.tokens(),
        "this_run": {"tried": tried, **ended},
        # How each committed document was written: through the experts (the protocol ran), by the
        # conductor alone (where --min-expert-share allows it), by the fallback; a baseline by its
        # method.
        "written_by": dict(
            Counter(
                r.get("written_by")
                for r in tally.results
                if r.get("ended") in ("final", "fallback")
            )
        ),
        # Success means the protocol ran: the conductor planned and its experts wrote the document.
        "protocol_success_rate": round(
            sum(
                r.get("written_by") == "experts" and r.get("ended") == "final"
                for r in tally.results
            )
            / tried,
            3,
        )
        if tried and job.method == "metasynth"
        else None,
        "rejection_rate": round(ended["rejected"] / tried, 3) if tried else None,
        "revisions": sum(r.get("revisions", 0) for r in tally.results),
        "gates": gate_stats(tally.results),
        "protocol_errors": sum(r.get("protocol_errors", 0) for r in tally.results),
        "corpus_tokens_this_run": tally.corpus_tokens,
        "llm": {
            "calls": calls,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "calls_per_second": round(calls / wall, 2) if wall else None,
            # What a user pays in agent overhead: corpus tokens per generated token (different
            # tokenizers when the server's model is not the --tokenizer; same for the embedded
            # model).
            "corpus_over_generated_tokens": round(tally.corpus_tokens / completion, 3)
            if completion
            else None,
            "cost_usd": round(
                (prompt * job.price_prompt + completion * job.price_completion) / 1e6, 4
            ),
            **accounting,
        },
        "corpus_tokens_per_second": round(tally.corpus_tokens / wall, 1) if wall else None,
        "wall_seconds": round(wall, 1),
    }


def write_manifest(
    out: Path,
    settings,
    prompts,
    stats: dict,
    interrupted: bool,
    concurrency: int,
    method: str = "metasynth",
) -> None:
    manifest = {
        "method": method,
        "config": {**as_dict(settings), "concurrency": concurrency},
        "prompt_hash": prompts.hash,
        "versions": versions(),
        "interrupted": interrupted,
        **stats,
    }
    write_atomic(RunDir(out).manifest, json.dumps(manifest, indent=2).encode())


def exit_status(
    tally, interrupted: bool, max_failures: int, failures: Path, items: str, met: bool
) -> int:
    """130 after Ctrl-C; 1 when more than --max-failures items failed (one line naming the file) or
    the budget was not met; else 0."""
    if interrupted:
        return 130
    if tally.failures > max_failures:
        print(
            f"error: {tally.failures} {items} failed (more than --max-failures {max_failures}); "
            f"see {failures}",
            file=sys.stderr,
        )
        return 1
    return 0 if met else 1


# SIGTERM ends a run like Ctrl-C: committed work is kept, manifest written
def terminate(signum, frame) -> None:
    raise KeyboardInterrupt
