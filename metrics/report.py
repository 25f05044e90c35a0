"""`python -m metrics.report CORPUS... [--reference REAL...] --out DIR`: diversity of corpora, \
side by side.

Every corpus is first sampled to the same size (documents, or tokens), because most of these
metrics move with size. Writes DIR/metrics.json, DIR/metrics.md and PNG plots.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from core.cli import Parser, make_dir, positive, run_command, within
from core.errors import UserError
from core.jsonl import write_atomic
from memory import quality
from memory.store import DEFAULT_THRESHOLD
from metrics.corpora import Corpus, load, sample

# name -> (label, True when higher = more diverse)
METRICS = {
    "task2vec": ("Task2Vec diversity coefficient", True),
    "compression_ratio": ("Compression ratio (gzip)", False),
    "ngram_diversity": ("N-gram diversity (n = 1..4)", True),
    "homogenization_rougel": ("Homogenization (ROUGE-L)", False),
    "self_repetition": ("Self-repetition (4-grams)", False),
    "remote_clique": ("Remote-clique", True),
    "chamfer": ("Chamfer distance", True),
    "vendi": ("Vendi score", True),
    "near_duplicates": ("Near-duplicate share", False),
    "rejection_rate": ("Rejected drafts (run's rejects.jsonl)", False),
}
# The quality gate's rules (memory/quality.py) applied to every corpus alike: the share of sampled
# documents each flags, and any of them. Lower is better; not a diversity measure.
FLAGS = {
    "flagged": "Flagged by any quality rule",
    **{f"flagged_{rule}": f"Flagged: {rule.replace('_', ' ')}" for rule in quality.RULES},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog="python -m metrics.report", description=__doc__.splitlines()[0])
    p.add_argument(
        "corpora",
        nargs="*",
        metavar="CORPUS",
        help="JSONL file or run directory (an instruction set too: its instructions are measured), "
        "optionally NAME=PATH",
    )
    p.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="REAL",
        help="real text to compare against (repeatable)",
    )
    p.add_argument("--out", required=True, help="folder for metrics.json, metrics.md and the plots")
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--docs", type=positive(int), help="documents per corpus (default: the smallest corpus)"
    )
    size.add_argument(
        "--tokens",
        type=positive(int),
        help="tokens per corpus instead (embedded tokenizer, whole documents)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--rouge-docs",
        type=positive(int),
        default=500,
        help="documents scored pairwise by ROUGE-L (default 500)",
    )
    p.add_argument(
        "--embed-docs",
        type=positive(int),
        default=2000,
        help="documents in the embedding metrics (default 2000)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="near-duplicate similarity (default: the gate's)",
    )
    t2v = p.add_argument_group("Task2Vec")
    t2v.add_argument(
        "--probe",
        default="embedded",
        help="causal LM probe: 'embedded' (SmolLM2-135M) or a local path / cached hub id",
    )
    t2v.add_argument(
        "--no-task2vec", action="store_true", help="skip the Task2Vec coefficient (the slow one)"
    )
    t2v.add_argument("--t2v-batches", type=positive(int), default=12)
    t2v.add_argument("--t2v-batch-size", type=positive(int), default=8)
    t2v.add_argument("--t2v-max-tokens", type=positive(int), default=128)
    t2v.add_argument(
        "--t2v-steps",
        type=within(int, 0),
        default=2,
        help="Adam steps on the head per batch (default 2)",
    )
    args = p.parse_args(argv)
    if not args.corpora and not args.reference:
        raise UserError("give at least one corpus (CORPUS or --reference REAL)")
    if not 0 < args.threshold <= 1:
        raise UserError(f"--threshold is a cosine similarity in (0, 1], got {args.threshold}")
    if args.probe.startswith(("/", ".", "~")):
        if not Path(args.probe).expanduser().is_dir():
            raise UserError(f"--probe: no model folder at {args.probe}")
        args.probe = str(Path(args.probe).expanduser())
    if args.docs is not None and args.docs < 2:
        raise UserError("--docs must be at least 2 (diversity compares documents)")
    if args.t2v_max_tokens < 2:
        raise UserError("--t2v-max-tokens must be at least 2 (one token predicts the next)")
    if args.t2v_batches < 2:
        raise UserError(
            "--t2v-batches must be at least 2 (the coefficient compares pairs of batches)"
        )
    return args


def load_all(args: argparse.Namespace) -> list[Corpus]:
    corpora = [load(s) for s in args.corpora] + [load(s, reference=True) for s in args.reference]
    names = [c.name for c in corpora]
    for name in names:
        if names.count(name) > 1:
            raise UserError(f"two corpora are named {name!r}: name them with NAME=PATH")
    return corpora


def sample_all(
    corpora: list[Corpus], args: argparse.Namespace
) -> tuple[dict, dict[str, list[int]]]:
    """Equal-size samples; an impossible size is a user error (no silent shrinking of one
    corpus)."""
    if args.tokens:
        from agents.tokens import count_tokens

        picks = {
            c.name: sample(c, tokens=args.tokens, count=count_tokens, seed=args.seed)
            for c in corpora
        }
        return {"unit": "tokens", "size": args.tokens}, picks
    smallest = min(len(c.texts) for c in corpora)
    docs = args.docs or smallest
    short = [c for c in corpora if len(c.texts) < docs]
    if short:
        raise UserError(
            f"{short[0].name} holds {len(short[0].texts)} documents; --docs must be at most "
            f"{smallest}"
        )
    return {"unit": "documents", "size": docs}, {
        c.name: sample(c, docs=docs, seed=args.seed) for c in corpora
    }


def embed(corpus: Corpus, picked: list[int], limit: int, seed: int) -> np.ndarray:
    """Unit vectors of (at most `limit` of) the sampled documents; a run's stored vectors when it
    has them."""
    from memory.embedder import default_embedder

    if len(picked) > limit:
        picked = sorted(np.random.default_rng(seed).choice(picked, limit, replace=False).tolist())
    if corpus.embeddings is not None:
        return corpus.embeddings[picked]
    return default_embedder().encode([corpus.texts[i] for i in picked], batch_size=64)


def measure(
    corpus: Corpus, picked: list[int], args: argparse.Namespace, probe, log
) -> tuple[dict, np.ndarray]:
    from metrics import embedding, lexical
    from metrics.task2vec import Task2VecSettings, diversity_coefficient

    texts = [corpus.texts[i] for i in picked]
    seconds: dict[str, float] = {}

    def timed(name, fn, *a, **kw):
        t0 = time.perf_counter()
        value = fn(*a, **kw)
        seconds[name] = round(time.perf_counter() - t0, 2)
        return value

    out: dict = {
        "documents": len(texts),
        "words": sum(len(t.split()) for t in texts),
        "method": corpus.method,
        "reference": corpus.reference,
        "path": str(corpus.path),
    }
    out["compression_ratio"] = timed("compression_ratio", lexical.compression_ratio, texts)
    out["ngram_diversity"] = timed("ngram_diversity", lexical.ngram_diversity, texts)
    out["self_repetition"] = timed("self_repetition", lexical.self_repetition, texts)
    rouge = timed(
        "homogenization_rougel", lexical.homogenization, texts, args.rouge_docs, args.seed
    )
    out["homogenization_rougel"], out["homogenization_docs"] = rouge["value"], rouge["docs"]
    vectors = timed("embeddings", embed, corpus, picked, args.embed_docs, args.seed)
    out["embedding_docs"] = len(vectors)
    out["remote_clique"] = timed("remote_clique", embedding.remote_clique, vectors)
    out["chamfer"] = timed("chamfer", embedding.chamfer, vectors)
    out["vendi"] = timed("vendi", embedding.vendi, vectors)
    out["near_duplicates"] = timed(
        "near_duplicates", embedding.near_duplicates, vectors, args.threshold
    )
    out["rejection_rate"] = corpus.rejection_rate
    out.update(timed("quality", flagged, corpus, picked, args.seed))
    if probe is not None:
        settings = Task2VecSettings(
            batches=args.t2v_batches,
            batch_size=args.t2v_batch_size,
            max_tokens=args.t2v_max_tokens,
            head_steps=args.t2v_steps,
            seed=args.seed,
        )
        try:
            t2v = timed("task2vec", diversity_coefficient, texts, probe, settings)
        except ValueError as e:
            raise UserError(f"{corpus.name}: Task2Vec: {e}") from None
        out["task2vec"], out["task2vec_ci95"], out["task2vec_settings"] = (
            t2v["value"],
            t2v["ci95"],
            t2v["settings"],
        )
        out["task2vec_batches"] = t2v["batches"]
    out["seconds"] = seconds
    log(f"{corpus.name}: {len(texts)} documents measured in {sum(seconds.values()):.1f}s")
    return out, vectors


def flagged(corpus: Corpus, picked: list[int], seed: int) -> dict:
    """The share of the sampled documents each quality rule flags. Off topic needs seed keywords (a
    generated corpus's records); echoes of an instruction are not checked (no instruction here)."""
    from memory.embedder import default_embedder

    seeds = [corpus.seeds[i] if corpus.seeds else [] for i in picked]
    vectors = embed(corpus, picked, len(picked), seed) if any(seeds) else None
    subjects = (
        default_embedder().encode([quality.subject(s) for s in seeds if s]) if any(seeds) else None
    )
    counts, row = dict.fromkeys(FLAGS, 0), 0
    talk = quality.Talk(default_embedder())
    for k, i in enumerate(picked):
        topic = None
        if seeds[k]:
            topic, row = quality.topic_similarity(vectors[k], subjects[row]), row + 1
        talked = talk(corpus.texts[i])
        checked = quality.check(corpus.texts[i], topic_similarity=topic, talked=talked)
        counts["flagged"] += not checked.passed
        for rule in checked.flags:
            counts[f"flagged_{rule}"] += 1
    shares = {key: round(n / len(picked), 4) for key, n in counts.items()}
    if not any(seeds):
        shares["flagged_off_topic"] = None  # not checkable without keywords
    return shares


def _no_nan(value):
    """NaN (a metric undefined on this sample) is not JSON: write null."""
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"


def table(results: dict, sample_info: dict) -> str:
    """Markdown: corpora as columns, metrics as rows; the most diverse synthetic corpus in bold."""
    names = list(results)
    head = [f"{n} (real)" if results[n]["reference"] else n for n in names]
    lines = [
        f"Sample: {sample_info['size']:,} {sample_info['unit']} per corpus (seed "
        f"{sample_info['seed']}).",
        "",
        "| metric | " + " | ".join(head) + " |",
        "|---|" + "---|" * len(names),
    ]
    for key, (label, higher) in METRICS.items():
        values = [results[n].get(key) for n in names]
        if all(v is None for v in values):
            continue
        synthetic = [
            v for n, v in zip(names, values) if v is not None and not results[n]["reference"]
        ]
        best = (max if higher else min)(synthetic) if len(synthetic) > 1 else None
        cells = []
        for n, v in zip(names, values):
            cell = _fmt(v)
            if key == "task2vec" and v is not None:
                ci = results[n]["task2vec_ci95"]
                cell += f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else " (2 batches: no interval)"
            cells.append(
                f"**{cell}**"
                if best is not None and v == best and not results[n]["reference"]
                else cell
            )
        lines.append(f"| {label} {'↑' if higher else '↓'} | " + " | ".join(cells) + " |")
    for key, label in FLAGS.items():
        if any(results[n].get(key) is not None for n in names):
            lines.append(
                f"| {label} (share) | "
                + " | ".join(_fmt(results[n].get(key)) for n in names)
                + " |"
            )
    for key, label in (("documents", "documents"), ("words", "words")):
        lines.append(f"| {label} | " + " | ".join(str(results[n][key]) for n in names) + " |")
    lines += [
        "",
        "↑: higher is more diverse; ↓: lower is more diverse. Bold: the most diverse synthetic "
        "corpus.",
        "Flagged: the quality gate's rules (memory/quality.py) on every corpus alike; off topic "
        "needs seed keywords.",
        "Task2Vec: mean pairwise cosine distance of batch embeddings [95 % bootstrap interval].",
    ]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    corpora = load_all(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    info, picks = sample_all(corpora, args)
    info["seed"] = args.seed
    probe = None
    if not args.no_task2vec:
        for name, picked in picks.items():  # fail before minutes of work, not in the middle of them
            if len(picked) // args.t2v_batch_size < 2:
                raise UserError(
                    f"{name}: Task2Vec: {len(picked)} documents make fewer than 2 batches of "
                    f"{args.t2v_batch_size}; lower --t2v-batch-size"
                )
        from metrics.task2vec import Probe

        console.log(f"loading the Task2Vec probe ({args.probe})")
        probe = Probe(args.probe)
    make_dir(out)  # before minutes of work, not after them
    started = time.perf_counter()
    from metrics import lexical

    # imported up front (spaCy, evaluate: ~10 s) so no metric's time includes it
    lexical.diversity_package()
    results, vectors = {}, {}
    for done, corpus in enumerate(corpora, 1):
        results[corpus.name], vectors[corpus.name] = measure(
            corpus, picks[corpus.name], args, probe, console.log
        )
        # equal-size samples: each corpus costs about the same
        spent = time.perf_counter() - started
        console.log(
            f"{done}/{len(corpora)} corpora measured, about "
            f"{spent / done * (len(corpora) - done):.0f}s left"
        )
    report = {
        "sample": info,
        "metrics": {
            k: {"label": label, "higher_is_more_diverse": h} for k, (label, h) in METRICS.items()
        },
        "settings": {
            "rouge_docs": args.rouge_docs,
            "embed_docs": args.embed_docs,
            "threshold": args.threshold,
            "probe": None if probe is None else args.probe,
        },
        "corpora": results,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_atomic(out / "metrics.json", json.dumps(_no_nan(report), indent=2).encode())
    write_atomic(out / "metrics.md", table(results, info).encode())
    from metrics import plots

    plots.bars(
        results,
        {**METRICS, **{k: (label, False) for k, label in FLAGS.items()}},
        out / "metrics.png",
    )
    plots.projection(
        vectors, {n: r["reference"] for n, r in results.items()}, out / "embeddings.png"
    )
    console.log(
        f"wrote {out}/metrics.json, metrics.md, metrics.png, embeddings.png in {report['seconds']}s"
    )
    print(table(results, info))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
