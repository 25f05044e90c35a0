"""Which repetition controls keep an embedded writer from looping: the quality gate's flags per \
setting.

    .venv/bin/python -m benchmarks.decoding [--model embedded:NAME] [--prompts 16]
        [--domains finance biomedicine]

The same writer prompts (prompts/structured/write.md, filled from the domain's vocabulary with a
seeded brief: keywords, genre, audience, a persona, an angle on the first keyword) are answered
under each setting at the writers' temperature, 4 at a time, and every reply is checked by the
quality gate (memory/quality.py: length, Gopher repetition, task text, off topic). Prints, per
setting, the share flagged by each rule and by any, and the mean words per reply.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections import Counter

from langchain_core.messages import HumanMessage, SystemMessage

from agents.calls import LLAMA_CPP, Router, Sampling
from agents.embedded import EmbeddedServer, model_name
from agents.prompts import PromptSet, load_prompts
from graph.settings import DocumentSettings
from memory import quality
from memory.embedder import default_embedder

DEFAULTS = DocumentSettings()
SETTINGS = {  # name -> Sampling
    "plain": Sampling(),
    "dry 0.8": Sampling(dry_multiplier=0.8),
    "repeat 1.1": Sampling(repeat_penalty=1.1),
    "dry 0.8 + repeat 1.1": Sampling(repeat_penalty=1.1, dry_multiplier=0.8),
    "dry 0.8 + repeat 1.1 + min_p 0.05": Sampling(
        repeat_penalty=1.1, dry_multiplier=0.8, min_p=0.05
    ),
    "repeat 1.1 + min_p 0.05": Sampling(repeat_penalty=1.1, min_p=0.05),
}
PERSONAS = [
    "Credit Analyst",
    "Senior Economist",
    "Clinical Researcher",
    "Health Journalist",
    "Policy Adviser",
]


def writer_prompts(
    domain: str, n: int, seed: int = 0, prompts: PromptSet | None = None
) -> list[tuple[str, list[str], list[str]]]:
    """n (instruction, keywords, values filled in) as the structured protocol's writer receives
    them; the same briefs for any `prompts` with the same vocabulary."""
    prompts = prompts or load_prompts(domain)
    vocab, rng = prompts.domain, random.Random(f"{seed}:{domain}")
    out = []
    for _ in range(n):
        keywords = rng.sample(vocab.keywords, 4)
        audience = rng.choice(vocab.audiences)
        brief = {
            "expert": rng.choice(PERSONAS),
            "genre": rng.choice(vocab.genres),
            "audience": audience,
            "angle": f"{keywords[0]} and what it changes for {audience}",
        }
        text = prompts.render(
            "structured/write.md", domain=vocab.name, keywords=", ".join(keywords), **brief
        )
        out.append((text, keywords, [*keywords, *brief.values()]))
    return out


def writer_router(server: EmbeddedServer, max_tokens: int, sampling: Sampling) -> Router:
    """The writers' router to the embedded server, at their temperature."""
    return Router(
        [server.base_url],
        server.model,
        DEFAULTS.expert_temperature,
        max_tokens,
        grammar_style=LLAMA_CPP,
        sampling=sampling,
    )


async def answer(router: Router, system: str, jobs: list[tuple]) -> list[str]:
    """The writer's reply to each job's instruction (its first item), 4 in flight."""
    semaphore = asyncio.Semaphore(4)

    async def one(text: str) -> str:
        async with semaphore:
            return str(
                (await router.call([SystemMessage(system), HumanMessage(text)], "writer")).text
            )

    return await asyncio.gather(*(one(text) for text, *_ in jobs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--prompts", type=int, default=16, help="writer prompts per domain")
    parser.add_argument("--domains", nargs="+", default=["finance", "biomedicine"])
    parser.add_argument("--max-tokens", type=int, default=DEFAULTS.expert_max_tokens)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    name = model_name(args.model)
    jobs = [job for domain in args.domains for job in writer_prompts(domain, args.prompts)]
    system = load_prompts("finance").render("expert.md")
    embedder = default_embedder()
    subjects = embedder.encode([quality.subject(keywords) for _, keywords, _ in jobs])
    print(
        f"{name}: {len(jobs)} writer prompts ({', '.join(args.domains)}), temperature "
        f"{DEFAULTS.expert_temperature}, {args.max_tokens} tokens"
    )
    with EmbeddedServer(model=name, slots=4) as server:
        for setting in args.settings:
            router = writer_router(server, args.max_tokens, SETTINGS[setting])
            replies = asyncio.run(answer(router, system, jobs))
            vectors = embedder.encode(replies)
            flags, words = Counter(), 0
            for (text, _, _), reply, vector, topic in zip(jobs, replies, vectors, subjects):
                checked = quality.check(reply, text, quality.topic_similarity(vector, topic))
                flags.update(checked.flags)
                flags["any"] += not checked.passed
                words += checked.figures["words"]
            shares = "  ".join(
                f"{rule} {flags[rule] / len(jobs):.0%}" for rule in (*quality.RULES, "any")
            )
            print(f"{setting:<36} {shares}  words {words / len(jobs):.0f}", flush=True)


if __name__ == "__main__":
    main()
