"""train.ablate's results (results.json, .md, .png) from what the arms left on disk."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.errors import UserError
from core.jsonl import write_atomic
from core.rundir import TRAIN_METRICS
from core.splits import EVALUATION
from core.splits import VERSION as SPLIT_RULE

LOWER_IS_BETTER = {"perplexity"}


def _read(path: Path):
    return json.loads(path.read_text())


def collect(out: Path, arms: dict, seeds: list[int]) -> dict:
    """Per-item scores, trained tokens and validation curves of every arm and seed."""
    runs: dict = {"items": {}, "tokens": {}, "validation_loss": {}, "seconds": {}}
    for name in arms:
        for key in runs:
            runs[key][name] = [] if key == "items" else {}
        for seed in seeds:
            folder = out / "arms" / name / f"seed-{seed}"
            runs["items"][name].append(_read(folder / "items.json"))
            runs["tokens"][name][seed] = _read(folder / "train_config.json")["trained_tokens"]
            rows = [json.loads(line) for line in (folder / TRAIN_METRICS).read_text().splitlines()]
            runs["validation_loss"][name][seed] = [
                [r["step"], r["val_loss"]] for r in rows if "val_loss" in r
            ]
            timing = folder / "timing.json"
            runs["seconds"][name][seed] = _read(timing) if timing.exists() else {}
    return runs


def write(out: Path, args: argparse.Namespace, prepared: dict) -> dict:
    from train import bootstrap
    from train.tasks import TASKS

    arms = prepared["arms"]
    runs = collect(out, arms, args.seeds)
    for name, by_seed in runs["tokens"].items():
        if set(by_seed.values()) != {args.tokens}:
            raise UserError(f"arm {name} trained on {by_seed} tokens, not {args.tokens}")
    base = _read(out / "base" / "items.json")
    scores = bootstrap.table(
        base, runs["items"], {t: TASKS[t] for t in args.tasks}, replicates=args.bootstrap
    )
    results = {
        "settings": {k: v for k, v in vars(args).items()},
        "seeds": args.seeds,
        "split": {
            "evaluated": EVALUATION,
            "rule": SPLIT_RULE,
            "sets": prepared["evaluation_sets"],
            "note": "tasks and perplexity on the evaluation half; the real arm and "
            "any seed documents from the generation half",
        },
        "evaluation_items": {
            k: (len(v) if k == "perplexity" else len(v["gold"])) for k, v in base.items()
        },
        "arms": arms,
        "tokens": runs["tokens"],
        "scores": scores,
        "validation": prepared["validation"],
        "validation_loss": runs["validation_loss"],
        "seconds": {"base": _timing(out / "base"), "arms": runs["seconds"]},
        "decontamination": prepared["decontamination"],
    }
    write_atomic(out / "results.json", json.dumps(results, indent=2).encode())
    write_atomic(out / "results.md", markdown(results).encode())
    plot(results, out / "results.png")
    return results


def _timing(folder: Path) -> dict:
    path = folder / "timing.json"
    return _read(path) if path.exists() else {}


def _composition(arm: dict) -> str:
    parts = [
        f"{source}" + (f": {tokens:,} tokens" if tokens else "")
        for source, tokens in arm["composition"].items()
    ]
    return "; ".join(parts)


def _better(name: str) -> str:
    return "lower" if name in LOWER_IS_BETTER else "higher"


def markdown(results: dict) -> str:
    scores, base = results["scores"], results["scores"]["base"]
    names = list(base)
    seeds = ", ".join(map(str, results["seeds"]))
    head = [
        "| arm | " + " | ".join(f"{n} ({_better(n)} is better)" for n in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    rows = [
        "| base | "
        + " | ".join(f"{base[n]['value']} [{base[n]['ci'][0]}, {base[n]['ci'][1]}]" for n in names)
        + " |"
    ]
    for arm, by_score in scores["arms"].items():
        cells = [
            f"{s['mean']} (Δ {s['delta']:+.4f} [{s['delta_ci'][0]:+.4f}, {s['delta_ci'][1]:+.4f}])"
            for s in (by_score[n] for n in names)
        ]
        rows.append(f"| {arm} | " + " | ".join(cells) + " |")
    items = ", ".join(f"{k}: {v}" for k, v in results["evaluation_items"].items())
    settings = results["settings"]
    lines = [
        f"# Ablation: {settings['domain']}, {settings['tokens']:,} tokens per arm, seeds {seeds}",
        "",
        f"Base: {results['settings']['model']}. Scored on the {results['split']['evaluated']} "
        f"half ({results['split']['rule']}) of {', '.join(results['split']['sets'])}; items: "
        f"{items}. Brackets: 95 % bootstrap intervals over evaluation items and training "
        "seeds (for the base: over items).",
        "",
        *head,
        *rows,
        "",
        *_pairs(results["scores"].get("pairs", {}), names),
        "## Arms",
        "",
        "| arm | training text | documents | corpus tokens | trained tokens per seed |",
        "|---|---|---:|---:|---|",
    ]
    for arm, info in results["arms"].items():
        trained = ", ".join(f"{s}: {t:,}" for s, t in results["tokens"][arm].items())
        lines.append(
            f"| {arm} | {_composition(info)} | {info['documents']} | "
            f"{info['corpus_tokens']:,} | {trained} |"
        )
    from train.decontaminate import table as decontamination_table

    lines += [
        "",
        "## Decontamination",
        "",
        decontamination_table(results["decontamination"]).rstrip(),
        "",
        "Documents dropped before training: "
        + ", ".join(f"{r['corpus']} {r['dropped']}" for r in results["decontamination"]),
        "",
    ]
    return "\n".join(lines)


def _pairs(pairs: dict, names: list[str]) -> list[str]:
    """Arm against arm: the difference of means with its own interval (same replicates), and
    which arm it favours when the interval excludes 0."""
    if not pairs:
        return []
    lines = [
        "## Arm against arm",
        "",
        "Difference of the means (first arm minus second), 95 % interval over the same "
        "resamples of items and seeds. `*` marks an interval that excludes 0.",
        "",
        "| arms | " + " | ".join(f"{n} ({_better(n)} is better)" for n in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for pair, by_score in pairs.items():
        cells = []
        for n in names:
            d = by_score[n]
            low, high = d["ci"]
            mark = " *" if low > 0 or high < 0 else ""
            cells.append(f"{d['difference']:+.4f} [{low:+.4f}, {high:+.4f}]{mark}")
        lines.append(f"| {pair} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["scores"]["base"])
    fig, axes = plt.subplots(1, 1 + len(names), figsize=(5 * (1 + len(names)), 4))
    curves = axes[0]
    for k, (arm, by_seed) in enumerate(results["validation_loss"].items()):
        color = f"C{k}"
        for i, rows in enumerate(by_seed.values()):
            if rows:
                steps, losses = zip(*rows)
                curves.plot(steps, losses, color=color, alpha=0.8, label=arm if i == 0 else None)
    curves.set(title="validation loss (held-out real text)", xlabel="step", ylabel="loss")
    curves.legend(fontsize=8)
    arms = list(results["scores"]["arms"])
    for ax, name in zip(axes[1:], names):
        deltas = [results["scores"]["arms"][a][name] for a in arms]
        centre = [d["delta"] for d in deltas]
        low = [d["delta"] - d["delta_ci"][0] for d in deltas]
        high = [d["delta_ci"][1] - d["delta"] for d in deltas]
        ax.errorbar(centre, range(len(arms)), xerr=[low, high], fmt="o", capsize=4)
        ax.axvline(0, color="grey", linewidth=1)
        ax.set_yticks(range(len(arms)), arms)
        better = "lower" if name in LOWER_IS_BETTER else "higher"
        ax.set(title=f"{name}: delta to base ({better} is better)", xlabel="delta, 95 % interval")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
