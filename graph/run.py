"""`python -m graph.run --domain finance`: write a MetaSynth corpus, one graph run per document.

Bad input (flags, prompt files, run directory, servers) ends in one line on stderr and exit code 2,
before anything on disk is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from importlib import metadata
from pathlib import Path

from agents.errors import UserError
from agents.llm import check_server
from graph.configuration import DEFAULT_THRESHOLD, Context
from graph.seeds import read_seed_docs
from graph.state import merge_usage
from memory.store import read_jsonl, write_atomic

RUN_FILES = ("corpus.jsonl", "rejects.jsonl", "manifest.json", "memory", "server.log")
PACKAGES = ("langgraph", "langchain-core", "langchain-openai", "faiss-cpu", "sentence-transformers",
            "transformers", "llama-cpp-python", "torch")


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage + message otherwise)
        raise UserError(message)


def positive(kind):
    def check(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return check


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog="python -m graph.run", description=__doc__.splitlines()[0])
    p.add_argument("--domain", default="finance", help="prompts/domains/<domain>.yaml (default finance)")
    p.add_argument("--docs", type=positive(int), default=5, help="documents the corpus should hold (default 5)")
    p.add_argument("--out", help="run directory (default runs/<domain>)")
    p.add_argument("--base-url", help="OpenAI-compatible /v1 URL (vLLM, ...); default: the embedded SmolLM2 server")
    p.add_argument("--model", help="model name on that server (default: the first it serves)")
    p.add_argument("--expert-base-url", help="separate server for the experts")
    p.add_argument("--expert-model", help="separate model for the experts")
    p.add_argument("--threshold", type=positive(float), default=DEFAULT_THRESHOLD,
                   help=f"novelty gate: max cosine similarity to any committed document (default {DEFAULT_THRESHOLD})")
    p.add_argument("--keywords", type=positive(int), default=4, help="seed keywords per document (default 4)")
    p.add_argument("--recall-k", type=int, default=5, help="prior documents shown to the conductor (default 5)")
    p.add_argument("--max-rounds", type=positive(int), default=15, help="conductor turns per document (default 15)")
    p.add_argument("--max-revisions", type=int, default=2, help="too-similar revisions before rejection (default 2)")
    p.add_argument("--max-protocol-errors", type=positive(int), default=3, help="malformed turns before the fallback (default 3)")
    p.add_argument("--max-tokens", type=positive(int), default=768, help="conductor completion tokens per turn")
    p.add_argument("--expert-max-tokens", type=positive(int), default=512, help="expert completion tokens per reply")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed-docs", help="topic-aware mode: JSONL of real documents to seed from")
    p.add_argument("--prompts", help="folder of prompt files overriding prompts/")
    p.add_argument("--tokenizer", default="embedded", help="tokenizer for document token counts (local path)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--max-attempts", type=positive(int), help="stop after this many documents tried (default 3 x --docs)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue an existing run directory")
    group.add_argument("--overwrite", action="store_true", help="delete an existing run's files first")
    p.add_argument("--quiet", action="store_true", help="no per-document lines")
    args = p.parse_args(argv)
    if args.threshold > 1:
        raise UserError(f"--threshold is a cosine similarity in (0, 1], got {args.threshold}")
    if min(args.recall_k, args.max_revisions) < 0:
        raise UserError("--recall-k and --max-revisions cannot be negative")
    if args.expert_model and not (args.base_url or args.expert_base_url):
        raise UserError("--expert-model needs --base-url or --expert-base-url (the embedded server has one model)")
    return args


def context_from(args: argparse.Namespace) -> Context:
    return Context(
        domain=args.domain, out_dir=str(Path(args.out or f"runs/{args.domain}")), base_url=args.base_url or "",
        model=args.model or "", expert_base_url=args.expert_base_url or "", expert_model=args.expert_model or "",
        temperature=args.temperature, max_tokens=args.max_tokens, expert_max_tokens=args.expert_max_tokens,
        keywords=args.keywords, recall_k=args.recall_k, threshold=args.threshold, max_rounds=args.max_rounds,
        max_revisions=args.max_revisions, max_protocol_errors=args.max_protocol_errors, seed=args.seed,
        seed_docs=args.seed_docs or "", prompts_dir=args.prompts or "", tokenizer=args.tokenizer,
    )


def prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber a run; check the directory is writable. Deletes nothing (see clear_run_dir)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    existing = out.is_dir() and (out / "corpus.jsonl").exists()
    if existing and not (resume or overwrite):
        raise UserError(f"{out} already holds a corpus; pass --resume to continue it or --overwrite to replace it")
    if resume and not existing:
        raise UserError(f"--resume: no corpus.jsonl in {out}")
    if resume:
        read_jsonl(out / "corpus.jsonl")  # a corrupt corpus is reported before anything starts
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to {out}: {e.strerror}") from None


def clear_run_dir(out: Path) -> None:
    for name in RUN_FILES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def summarize(results: list[dict], usage: dict, memory, wall: float) -> dict:
    committed = [r for r in results if r.get("ended") in ("final", "fallback")]
    ended = {k: sum(r.get("ended") == k for r in results) for k in ("final", "fallback", "rejected", "failed")}
    tried = len(results)
    roles = {"conductor": {}, "experts": {}, "fallback": {}}
    for role, counts in usage.items():
        group = "conductor" if role == "conductor" else role.split(":")[0] + "s" if role.startswith("expert") else "fallback"
        slot = roles[group]
        for key, value in counts.items():
            slot[key] = round(slot.get(key, 0) + value, 3)
    generated = sum(c.get("completion_tokens", 0) for c in usage.values())
    corpus_tokens = sum(r.get("tokens", 0) for r in committed)
    return {
        "documents_in_corpus": len(memory), "this_run": {"tried": tried, **ended},
        "protocol_success_rate": round(ended["final"] / tried, 3) if tried else None,
        "revisions": sum(r.get("revisions", 0) for r in results),
        "protocol_errors": sum(r.get("protocol_errors", 0) for r in results),
        "corpus_tokens_this_run": corpus_tokens, "generated_tokens": generated,
        "usage_by_role": roles, "usage_by_name": usage, "wall_seconds": round(wall, 1),
    }


def write_manifest(out: Path, ctx: Context, prompts, stats: dict, interrupted: bool) -> None:
    manifest = {
        "config": ctx.as_dict(), "prompt_hash": prompts.hash, "versions": versions(),
        "interrupted": interrupted, **stats,
    }
    write_atomic(out / "manifest.json", json.dumps(manifest, indent=2).encode())


def generate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from graph import resources as res
    from graph.graph import graph

    console = Console(stderr=True, quiet=args.quiet)
    ctx = context_from(args)
    prompts = res.prompts(ctx)  # validates every prompt file and the domain before anything else
    if ctx.seed_docs:
        read_seed_docs(ctx.seed_docs)
    out = Path(ctx.out_dir)
    prepare_run_dir(out, args.resume, args.overwrite)
    for url in {u for u in (ctx.base_url, ctx.expert_base_url) if u}:
        check_server(url, ctx.model if url == ctx.base_url else ctx.expert_model or ctx.model)

    with ExitStack() as stack:
        if not ctx.base_url:
            from agents.embedded import MODEL_NAME, EmbeddedServer

            console.log("starting the embedded model server (SmolLM2-135M-Instruct, llama.cpp)")
            server = stack.enter_context(EmbeddedServer(log_path=out / "server.log"))
            ctx = replace(ctx, base_url=server.base_url, model=MODEL_NAME)
        if args.overwrite:
            clear_run_dir(out)
        res.clear()
        memory = res.memory(ctx)
        # Later runs of a directory draw fresh seeds: document i is seeded by seed + i over all tries.
        start_index = len(memory) + _count_lines(memory.rejects_path)
        target, budget = args.docs, args.max_attempts or 3 * args.docs
        console.log(f"{prompts.domain.name}: {len(memory)} documents in {out}, target {target}")
        results, usage, started, interrupted = [], {}, time.perf_counter(), False
        try:
            attempt = 0
            while len(memory) < target and attempt < budget:
                t0 = time.perf_counter()
                state = graph.invoke({"index": start_index + attempt}, context=ctx)
                attempt += 1
                record = {**(state.get("result") or {}), "ended": state.get("ended", "failed")}
                results.append(record)
                usage = merge_usage(usage, state.get("usage"))
                sim = record.get("nearest_similarity")
                console.log(f"[{len(memory)}/{target}] {record.get('id') or record.get('reason', '-')} {record['ended']:<8} "
                            f"rounds={record.get('rounds', 0)} revisions={record.get('revisions', 0)} "
                            f"experts={record.get('experts', [])} sim={'-' if sim is None else f'{sim:.3f}'} "
                            f"{time.perf_counter() - t0:.1f}s  {record.get('summary', '')[:70]}")
        except KeyboardInterrupt:
            interrupted = True
            console.log("interrupted: committed documents are safe; continue with --resume")
        finally:
            stats = summarize(results, usage, memory, time.perf_counter() - started)
            memory.save_index()
            write_manifest(out, ctx, prompts, stats, interrupted)
    run = stats["this_run"]
    print(f"{out}: {stats['documents_in_corpus']} documents ({run['final']} by the conductor, {run['fallback']} by the "
          f"fallback, {run['rejected']} rejected) in {stats['wall_seconds']}s; protocol success "
          f"{stats['protocol_success_rate']}; revisions {stats['revisions']}", file=sys.stderr)
    if interrupted:
        return 130
    return 0 if len(memory) >= target else 1


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return generate(parse_args(argv))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
