"""What a corpus buys: the paper's ablation end to end, `python -m train.ablate`.

    python -m train.ablate --domain finance --corpus metasynth=runs/finance \
        --corpus template=runs/finance-template --model embedded --tokens 102400 --seeds 0,1,2 \
        --out ablations/finance

Every arm (each --corpus, and the real-text reference arm) continues pretraining the same base on
exactly --tokens tokens of its text (counted with the base's tokenizer), with the same schedule,
sequence length and seeds, through train.cpt's own `train`. The base and every checkpoint are then
scored by train.evaluate's code on the evaluation half of the domain's real data (core/splits.py):
held-out perplexity and the domain's task. Writes OUT/results.json, OUT/results.md (each arm's
scores, the delta to the base, 95 % bootstrap intervals over evaluation items and training seeds,
every arm against every other with the interval of the difference, the decontamination report)
and OUT/results.png (validation loss per arm; deltas with intervals).

Resumable: a killed run continues where it stopped (an arm+seed already scored is not redone, a
half-trained one resumes from its last checkpoint). Checkpoints are deleted once scored unless
--keep-checkpoints. The method, the split and the decontamination rule: docs/ablation.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from core.cli import run_command
from core.errors import UserError
from core.jsonl import write_atomic
from core.splits import EVALUATION, GENERATION
from core.splits import VERSION as SPLIT_RULE

REAL = "real"
DOMAINS = {  # the evaluation task, the held-out perplexity text, the real arm's own text
    "finance": {"task": "fpb", "perplexity": "fpb", "real": "fpb"},
    "biomedicine": {"task": "pubmedqa", "perplexity": "pubmedqa", "real": "pubmedqa"},
}
TOPUP = "pubmedqa"  # real text that fills a real arm its own half cannot (PubMedQA abstracts)
# Settings that change results: a resumed OUT must have been started with the same ones.
FIXED = (
    "domain",
    "corpus",
    "model",
    "tokens",
    "epochs",
    "real",
    "decontaminate",
    "seq_len",
    "tokens_per_step",
    "batch_size",
    "lr",
    "min_lr_ratio",
    "warmup",
    "weight_decay",
    "tasks",
    "limit",
    "max_len",
    "val_tokens",
    "boundaries",
    "precision",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from core.cli import Parser, positive, within

    p = Parser(prog="python -m train.ablate", description=__doc__.splitlines()[0])
    p.add_argument(
        "--corpus",
        action="append",
        default=[],
        help="NAME=PATH: a run directory or a JSONL with 'text' (repeatable)",
    )
    p.add_argument(
        "--domain",
        choices=list(DOMAINS),
        required=True,
        help="the evaluation (finance: FPB; biomedicine: PubMedQA) and the real arm",
    )
    p.add_argument("--model", default="embedded", help="the base: 'embedded', a folder or a hub id")
    p.add_argument(
        "--tokens",
        type=positive(int),
        required=True,
        help="training tokens per arm (a multiple of the tokens per step)",
    )
    p.add_argument(
        "--epochs",
        type=positive(int),
        default=1,
        help="most passes over a corpus shorter than --tokens (default 1: refuse it)",
    )
    p.add_argument("--seeds", default="0", help="training seeds, comma-separated (default 0)")
    p.add_argument("--out", required=True)
    p.add_argument(
        "--real",
        choices=["topup", "repeat", "off"],
        default="topup",
        help="the real arm: the domain's generation half, topped up with PubMedQA "
        "abstracts (topup), or repeated under --epochs (repeat), or none",
    )
    p.add_argument(
        "--decontaminate",
        choices=["report", "drop"],
        default="report",
        help="drop documents sharing an n-gram with the evaluation sets before training",
    )
    p.add_argument("--tasks", help="tasks to score (default: the domain's)")
    p.add_argument("--limit", type=positive(int), help="evaluation items per set (default all)")
    p.add_argument("--max-len", type=positive(int), default=2048, help="scoring context length")
    p.add_argument(
        "--seq-len", type=positive(int), help="block length (default 4096 on GPU, 512 on CPU)"
    )
    p.add_argument("--tokens-per-step", type=positive(int), help="tokens per optimizer step")
    p.add_argument("--batch-size", type=positive(int), default=1)
    p.add_argument("--lr", type=positive(float), default=2e-5)
    p.add_argument("--min-lr-ratio", type=within(float, 0, 1), default=0.1)
    p.add_argument("--warmup", type=within(float, 0), default=0.03)
    p.add_argument("--weight-decay", type=within(float, 0), default=0.1)
    p.add_argument("--boundaries", action="store_true")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument(
        "--val-tokens",
        type=positive(int),
        default=8192,
        help="held-out real text for the validation-loss curve (default 8192 tokens)",
    )
    p.add_argument(
        "--eval-every", type=positive(int), default=10, help="validation loss every N steps"
    )
    p.add_argument("--save-every", type=positive(int), default=50, help="checkpoint every N steps")
    p.add_argument("--log-every", type=positive(int), default=10)
    p.add_argument("--bootstrap", type=positive(int), default=1000, help="bootstrap replicates")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep final/ of every arm")
    p.add_argument("--trust-remote-code", action="store_true")
    args = p.parse_args(argv)
    from train.decontaminate import parse_corpora
    from train.evaluate import check_tasks

    args.corpus = parse_corpora(args.corpus)
    if REAL in args.corpus:
        raise UserError(f"--corpus name {REAL!r} is the real-text arm's; choose another")
    if not args.corpus and args.real == "off":
        raise UserError("no arm: give --corpus NAME=PATH (or keep the real arm)")
    for name, path in args.corpus.items():
        if not Path(path).exists():
            raise UserError(f"--corpus {name}: {path} not found")
    try:
        args.seeds = sorted({int(s) for s in args.seeds.split(",") if s.strip()})
    except ValueError:
        raise UserError(f"--seeds takes integers separated by commas, got {args.seeds!r}") from None
    if not args.seeds:
        raise UserError("--seeds: give at least one seed")
    args.tasks = [t for t in (args.tasks or DOMAINS[args.domain]["task"]).split(",") if t]
    check_tasks(args.tasks)
    _check_budget(args)
    return args


def _check_budget(args: argparse.Namespace) -> None:
    """--tokens must fill whole optimizer steps: refused here, before any model is scored."""
    import os

    from train.cpt import check_budget, step_shape

    processes = int(os.environ.get("WORLD_SIZE", "1"))
    check_budget(args.tokens, step_shape(args, processes)[1], args, processes)


def _settings(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in FIXED}


def _check_settings(out: Path, args: argparse.Namespace) -> None:
    """The first run's settings, or the same again on a rerun (seeds and arms may be added)."""
    path = out / "ablation.json"
    settings = _settings(args)
    if path.exists():
        try:
            earlier = json.loads(path.read_text())["settings"]
        except (ValueError, KeyError, TypeError):
            earlier = None
        if not isinstance(earlier, dict):
            raise UserError(f"{path} is damaged (no settings to compare); use another --out")
        for name, corpus in (earlier.get("corpus") or {}).items():
            if settings["corpus"].get(name) != corpus:
                raise UserError(
                    f"{out} has arm {name}={corpus}; give it again unchanged "
                    "(arms may be added, not changed or left out), or use another --out"
                )
        for key in FIXED:
            if key != "corpus" and earlier.get(key) != settings[key]:
                raise UserError(
                    f"{out} was started with --{key.replace('_', '-')} "
                    f"{earlier.get(key)!r}, not {settings[key]!r}; use another --out"
                )


def _record_settings(out: Path, args: argparse.Namespace) -> None:
    """Written once the arms' text is checked, so a refused rerun leaves the record as it was."""
    write_atomic(
        out / "ablation.json",
        json.dumps(
            {"settings": _settings(args), "seeds": args.seeds, "split": SPLIT_RULE}, indent=2
        ).encode(),
    )


def _jsonl(texts: list[str]) -> bytes:
    return "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()


def _write_arm_data(out: Path, name: str, texts: list[str]) -> None:
    """An arm's training text; refused when an arm already trained on other text (a run directory
    that has grown since, say), so no table mixes seeds trained on different corpora."""
    path = out / "data" / f"{name}.jsonl"
    content = _jsonl(texts)
    trained = out / "arms" / name
    if trained.exists() and any(trained.iterdir()) and path.exists():
        if path.read_bytes() != content:
            raise UserError(
                f"arm {name}: its corpus has changed since {trained} was trained; "
                "restore it or use another --out"
            )
    write_atomic(path, content)


def real_texts(args: argparse.Namespace, tokenizer) -> tuple[list[str], dict]:
    """The real arm's documents (generation halves only) and what they are made of, in tokens."""
    from train.realtext import count_tokens, documents, held_out_texts

    own = DOMAINS[args.domain]["real"]
    texts = documents(own, GENERATION)
    made = {f"{own} ({GENERATION} half)": count_tokens(texts, tokenizer)}
    if args.real == "topup" and own != TOPUP and made[next(iter(made))] < args.tokens:
        extra, total = [], made[next(iter(made))]
        for text in held_out_texts(TOPUP, GENERATION):  # the abstracts, in file order
            if total >= args.tokens:
                break
            extra.append(text)
            total += count_tokens([text], tokenizer)
        texts += extra
        made[f"{TOPUP} abstracts ({GENERATION} half)"] = count_tokens(extra, tokenizer)
    return texts, made


def prepare(args: argparse.Namespace, out: Path, tokenizer) -> dict:
    """Each arm's training file (decontaminated as asked), the validation text, the report."""
    from train.data import read_texts
    from train.decontaminate import evaluation_sets, matches
    from train.realtext import count_tokens, held_out_texts

    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    sources = {name: read_texts(path) for name, path in args.corpus.items()}
    composition = {name: {args.corpus[name]: None} for name in sources}
    if args.real != "off":
        sources[REAL], composition[REAL] = real_texts(args, tokenizer)
    datasets = sorted({*args.tasks, DOMAINS[args.domain]["perplexity"]})
    sets = evaluation_sets(datasets)
    arms, reports = {}, []
    for name, texts in sources.items():
        hits = matches(texts, sets)
        dirty = [i for i, h in enumerate(hits) if h]
        reports.append(
            {
                "corpus": name,
                "documents": len(texts),
                "contaminated": len(dirty),
                "share": round(len(dirty) / len(texts), 4),
                "by_set": {
                    s.name: {
                        "n": s.n,
                        "items": s.items,
                        "documents": sum(1 for h in hits if s.name in h),
                    }
                    for s in sets
                },
                "examples": [{"document": i, **hits[i]} for i in dirty[:5]],
                "dropped": len(dirty) if args.decontaminate == "drop" else 0,
            }
        )
        if args.decontaminate == "drop":
            texts = [t for t, h in zip(texts, hits) if not h]
        tokens = count_tokens(texts, tokenizer)
        if tokens * args.epochs < args.tokens:
            need = -(-args.tokens // tokens)
            raise UserError(
                f"arm {name}: {tokens} tokens, fewer than --tokens {args.tokens}"
                + (" after decontamination" if args.decontaminate == "drop" else "")
                + f"; pass --epochs {need} to repeat it"
            )
        _write_arm_data(out, name, texts)
        arms[name] = {
            "data": str(data / f"{name}.jsonl"),
            "documents": len(texts),
            "corpus_tokens": tokens,
            "composition": composition[name],
        }
    validation, total = [], 0
    for text in held_out_texts(DOMAINS[args.domain]["perplexity"], EVALUATION):
        if total >= args.val_tokens:
            break
        validation.append(text)
        total += count_tokens([text], tokenizer)
    write_atomic(data / "validation.jsonl", _jsonl(validation))
    write_atomic(out / "decontamination.json", json.dumps(reports, indent=2).encode())
    return {
        "arms": arms,
        "decontamination": reports,
        "evaluation_sets": datasets,
        "validation": {"texts": len(validation), "tokens": total},
    }


def cpt_argv(
    args: argparse.Namespace, data: str, folder: Path, seed: int, resume: bool
) -> list[str]:
    """The train.cpt command line of one arm and seed: every arm gets the same one but its data."""
    argv = [
        "--corpus",
        data,
        "--model",
        args.model,
        "--out",
        str(folder),
        "--tokens",
        str(args.tokens),
        "--epochs",
        str(args.epochs),
        "--seed",
        str(seed),
        "--validation",
        str(Path(args.out) / "data" / "validation.jsonl"),
        "--batch-size",
        str(args.batch_size),
        "--lr",
        str(args.lr),
        "--min-lr-ratio",
        str(args.min_lr_ratio),
        "--warmup",
        str(args.warmup),
        "--weight-decay",
        str(args.weight_decay),
        "--eval-every",
        str(args.eval_every),
        "--save-every",
        str(args.save_every),
        "--log-every",
        str(args.log_every),
        "--precision",
        args.precision,
    ]
    for flag in ("seq_len", "tokens_per_step"):
        if getattr(args, flag):
            argv += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    for flag in ("boundaries", "gradient_checkpointing", "trust_remote_code"):
        if getattr(args, flag):
            argv.append("--" + flag.replace("_", "-"))
    return argv + (["--resume"] if resume else [])


class Progress:
    """One line per step of the plan, with the time left estimated from the steps measured so far
    (this invocation's, and those a killed earlier one recorded in each unit's timing.json)."""

    def __init__(self, units: int, quiet: bool = False) -> None:
        self.units, self.done, self.seconds = units, 0, {"train": [], "score": []}
        self.quiet = quiet
        self.left = {"train": 0, "score": 0}

    def plan(self, kind: str, n: int = 1) -> None:
        self.left[kind] += n

    def record(self, kind: str, seconds: float) -> None:
        self.seconds[kind].append(seconds)
        self.left[kind] -= 1

    def estimate(self) -> str:
        if not self.seconds["train"] and self.left["train"]:
            return "estimate after the first arm"
        mean = {k: sum(v) / len(v) if v else 0.0 for k, v in self.seconds.items()}
        if not self.seconds["score"] and self.left["score"]:
            mean["score"] = mean["train"]  # no measure yet: guess scoring as long as training
        left = sum(self.left[k] * mean[k] for k in self.left)
        return f"about {_duration(left)} left"

    def say(self, what: str) -> None:
        self.done += 1
        if not self.quiet:
            print(
                f"[ablate {self.done}/{self.units}] {what} ({self.estimate()})",
                file=sys.stderr,
                flush=True,
            )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _timing(folder: Path) -> dict:
    path = folder / "timing.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _add_timing(folder: Path, kind: str, seconds: float) -> None:
    timing = _timing(folder)
    timing[kind] = round(timing.get(kind, 0.0) + seconds, 1)
    write_atomic(folder / "timing.json", json.dumps(timing).encode())


def score_into(model: str, folder: Path, plan, label: str) -> None:
    from train.evaluate import evaluate_model

    started = time.perf_counter()
    items = evaluate_model(model, plan, label)
    write_atomic(folder / "items.json", json.dumps(items).encode())
    _add_timing(folder, "score_s", time.perf_counter() - started)


def _drop_checkpoints(folder: Path) -> None:
    for name in ("checkpoints", "final"):
        if (folder / name).exists():
            shutil.rmtree(folder / name)


class Ranks:
    """Which process this is under `accelerate launch` (training runs on every rank; preparing,
    scoring and writing results on rank 0 while the others wait), or a plain single process."""

    def __init__(self) -> None:
        import os

        from train.loop import is_main_rank

        self.main = is_main_rank()
        self.state = None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            import torch
            from accelerate import PartialState

            self.state = PartialState(cpu=not torch.cuda.is_available())

    def wait(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()


def run_arm(
    args: argparse.Namespace,
    name: str,
    data: str,
    seed: int,
    plan,
    progress: Progress,
    ranks: Ranks,
) -> None:
    """Train (or resume) and score one arm at one seed; nothing is redone that is already done."""
    from train import cpt
    from train.loop import FINAL, checkpoints

    folder = Path(args.out) / "arms" / name / f"seed-{seed}"
    if (folder / "items.json").exists():
        if not args.keep_checkpoints and ranks.main:
            _drop_checkpoints(folder)  # a kill between scoring and clean-up
        progress.say(f"{name} seed {seed}: already scored")
        return
    if not (folder / FINAL / "config.json").exists():
        resume = folder.exists() and bool(checkpoints(folder))
        ranks.wait()  # every rank has decided before rank 0 clears anything
        if folder.exists() and not resume and ranks.main:
            shutil.rmtree(folder)  # killed before its first checkpoint: nothing to keep
        ranks.wait()
        started = time.perf_counter()
        cpt.train(cpt.parse_args(cpt_argv(args, data, folder, seed, resume)))
        if ranks.main:
            _add_timing(folder, "train_s", time.perf_counter() - started)
            progress.record("train", _timing(folder)["train_s"])
        progress.say(f"{name} seed {seed}: trained" + (" (resumed)" if resume else ""))
    if ranks.main:
        score_into(str(folder / FINAL), folder, plan, f"{name}/{seed}: ")
        progress.record("score", _timing(folder)["score_s"])
        if not args.keep_checkpoints:
            _drop_checkpoints(folder)
    ranks.wait()
    progress.say(f"{name} seed {seed}: scored")


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: ablate(parse_args(argv)))


def ablate(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from core.lock import hold
    from train.evaluate import Plan
    from train.realtext import tokenizer_of

    out = Path(args.out)
    ranks = Ranks()
    with hold(out) if ranks.main else nullcontext():
        if ranks.main:
            _check_settings(out, args)
            prepared = prepare(args, out, tokenizer_of(args.model))
            _record_settings(out, args)
            write_atomic(out / "prepared.json", json.dumps(prepared, indent=2).encode())
        ranks.wait()
        prepared = json.loads((out / "prepared.json").read_text())
        plan = Plan(
            args.tasks,
            DOMAINS[args.domain]["perplexity"],
            args.limit,
            args.max_len,
            split=EVALUATION,
            trust_remote_code=args.trust_remote_code,
        )
        arms = prepared["arms"]
        progress = Progress(1 + 2 * len(arms) * len(args.seeds), quiet=not ranks.main)
        _plan_progress(out, arms, args.seeds, progress)
        base = out / "base"
        if (base / "items.json").exists():
            progress.say("base: already scored")
        elif ranks.main:
            base.mkdir(exist_ok=True)
            score_into(args.model, base, plan, "base: ")
            progress.record("score", _timing(base)["score_s"])
            progress.say("base: scored")
        ranks.wait()
        for seed in args.seeds:
            for name, arm in arms.items():
                run_arm(args, name, arm["data"], seed, plan, progress, ranks)
        if ranks.main:
            from train.ablate_report import write

            write(out, args, prepared)
            print(f"results: {out / 'results.md'}, {out / 'results.json'}, {out / 'results.png'}")
    return 0


def _plan_progress(out: Path, arms: dict, seeds: list[int], progress: Progress) -> None:
    """Count what is left, and seed the estimate with units a killed run already timed."""
    if not (out / "base" / "items.json").exists():
        progress.plan("score")
    for seed in seeds:
        for name in arms:
            folder = out / "arms" / name / f"seed-{seed}"
            if (folder / "items.json").exists():
                progress.units -= 1  # one line, not two
                continue
            timing = _timing(folder)
            if "train_s" in timing and (folder / "final").exists():
                progress.seconds["train"].append(timing["train_s"])
                progress.units -= 1
            else:
                progress.plan("train")
            progress.plan("score")


if __name__ == "__main__":
    sys.exit(main())
