"""Which writer prompts keep the embedded writer from talking about its task: the quality gate on
first drafts and on the retry after a refusal, per prompt folder.

    .venv/bin/python -m benchmarks.writer_prompts [--variants shipped=- NAME=FOLDER ...]
        [--prompts 24] [--domains finance biomedicine] [--model embedded:NAME] [--out FILE.jsonl]

Each variant is a prompt override folder (`-`: the shipped prompts), as `graph.run --prompts`
takes one. Every variant answers the same briefs (the structured protocol's writer prompt,
structured/write.md, filled from a seeded brief: keywords, genre, audience, persona, angle), with
its own writer system prompt (expert.md), the writers' sampling defaults (DocumentSettings), 4 in
flight. Each draft goes through the gate's own checks (memory.quality.inspect: length, Gopher
repetition, not prose, task text with the talk check, off topic); a refused draft gets one retry,
its instruction followed by the variant's quality.md and the failed rule's fragment (a blank
note: the instruction alone), as the pipeline's writer does. Prints, per variant: first drafts
flagged (any rule, task text), retries that pass, briefs done within one retry, each with a 95 %
Wilson interval, and mean words. `--out` keeps every reply with its flags, to read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from pathlib import Path

from agents.calls import Router
from agents.embedded import EmbeddedServer, model_name
from agents.prompts import PromptSet, load_prompts
from benchmarks.decoding import DEFAULTS, answer, writer_prompts, writer_router
from benchmarks.shares import share
from graph.servers import writer_sampling
from graph.steps import problem, with_fix
from memory import quality
from memory.embedder import default_embedder


def check(
    talk: quality.Talk, reply: str, instruction: str, keywords: list[str], values: list[str]
) -> quality.Quality:
    """The gate's verdict on a reply, checked against the writer's instruction (not the note)."""
    return quality.inspect(talk, reply, keywords, instruction, values)[1]


async def variant_rows(
    name: str, prompts: dict[str, PromptSet], router: Router, talk: quality.Talk, briefs: int
) -> list[dict]:
    """First drafts for every domain's briefs, then one retry for each refused one."""
    rows = []
    for domain, prompt_set in prompts.items():
        jobs = writer_prompts(domain, briefs, prompts=prompt_set)
        system = prompt_set.render("expert.md")
        first = await answer(router, system, jobs)
        checked = [check(talk, reply, *job) for job, reply in zip(jobs, first)]
        retry_jobs = []
        for (text, keywords, values), reply, result in zip(jobs, first, checked):
            rows.append(row(name, domain, "first", text, reply, result))
            if not result.passed:
                # asked as the pipeline asks (with the note, if any); checked against the
                # instruction
                asked = with_fix(prompt_set, text, problem(prompt_set, result, keywords))
                retry_jobs.append((asked, text, keywords, values))
        again = await answer(router, system, retry_jobs)
        for (asked, *job), reply in zip(retry_jobs, again):
            rows.append(row(name, domain, "retry", asked, reply, check(talk, reply, *job)))
    return rows


def row(variant: str, domain: str, stage: str, asked: str, reply: str, result) -> dict:
    return {
        "variant": variant,
        "domain": domain,
        "stage": stage,
        "asked": asked,
        "reply": reply,
        "flags": list(result.flags),
        "task_text": result.figures["task_text"],
        "talk": result.figures["talk"],
        "words": result.figures["words"],
    }


def summary(name: str, rows: list[dict]) -> str:
    first = [r for r in rows if r["variant"] == name and r["stage"] == "first"]
    retries = [r for r in rows if r["variant"] == name and r["stage"] == "retry"]
    flagged = sum(bool(r["flags"]) for r in first)
    talked = sum("task_text" in r["flags"] for r in first)
    fixed = sum(not r["flags"] for r in retries)
    rules = Counter(rule for r in first for rule in r["flags"])
    words = sum(r["words"] for r in first) / max(len(first), 1)
    return (
        f"{name}: first drafts flagged {share(flagged, len(first))}, task text "
        f"{share(talked, len(first))}; retries passing {share(fixed, len(retries))}; done within "
        f"one retry {share(len(first) - flagged + fixed, len(first))}; words {words:.0f}; "
        f"first-draft flags {dict(rules.most_common())}"
    )


def parse_variant(text: str) -> tuple[str, str | None]:
    name, _, folder = text.partition("=")
    if not name or not folder:
        raise argparse.ArgumentTypeError(f"NAME=FOLDER (NAME=- for the shipped prompts): {text}")
    return name, None if folder == "-" else folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["shipped=-"], type=parse_variant)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--prompts", type=int, default=24, help="briefs per domain")
    parser.add_argument("--domains", nargs="+", default=["finance", "biomedicine"])
    parser.add_argument("--out", type=Path, help="every reply with its flags (JSONL)")
    args = parser.parse_args()
    name = model_name(args.model)
    variants = {
        label: {domain: load_prompts(domain, folder) for domain in args.domains}
        for label, folder in args.variants
    }
    talk = quality.Talk(default_embedder())
    print(
        f"{name}: {args.prompts} briefs per domain ({', '.join(args.domains)}), temperature "
        f"{DEFAULTS.expert_temperature}, {DEFAULTS.expert_max_tokens} tokens, the writers' "
        "sampling defaults",
        flush=True,
    )
    with EmbeddedServer(model=name, slots=4) as server:
        router = writer_router(server, DEFAULTS.expert_max_tokens, writer_sampling(DEFAULTS))
        asyncio.run(every_variant(variants, router, talk, args.prompts, args.out))


async def every_variant(
    variants: dict, router: Router, talk: quality.Talk, briefs: int, out: Path | None
) -> None:
    """One event loop for all: the router's HTTP clients belong to the loop that made them."""
    rows: list[dict] = []
    for label, prompts in variants.items():
        rows += await variant_rows(label, prompts, router, talk, briefs)
        print(summary(label, rows), flush=True)
        if out:
            out.write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
