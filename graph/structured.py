"""The structured protocol: a conductor protocol a small model can keep.

    offer -> plan --(usable brief)--> write -> review --(keep)--> gate
                 |                                  '--(revise)--> rewrite -> gate
                 |--(unusable brief)--> plan (told why)
                 '--(errors / round cap)--> fallback -> gate

- offer: the memory's view for the conductor, and only for it: counts of the categories, genres and
  audiences the corpus has, the nearest earlier documents, and the least-covered options offered
  for this document (the grammar admits only those).
- plan: the conductor fills a five-line brief (category, genre, audience, the writer's persona, an
  angle on one of the seed keywords), one grammar-bounded turn (prompts/brief.gbnf).
- write / review / rewrite: experts with fresh eyes. The writer sees the instruction rendered from
  the brief (prompts/structured/write.md), never the corpus; the reviewer sees that draft and the
  brief's genre and audience, and answers keep or one fix (prompts/review.gbnf).
The brief and the reviews land in the record, so a user can see why the corpus is diverse.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from agents import grammar
from agents.brief import BriefError, parse_brief, parse_review
from agents.protocol import document_text
from graph import resources as res
from graph.configuration import Context
from graph.nodes import SEED_DOC_CHARS, ask, recall_nearest, with_fix
from graph.state import DocState, Draft

# brief field -> Domain list
FIELDS = {"category": "categories", "genre": "genres", "audience": "audiences"}
DRAFT_CHARS = 4000  # of a draft shown to the reviewer and the rewriter


def least_covered(values: list[str], counts: Counter, k: int, rng: random.Random) -> list[str]:
    """The k values the corpus has least of; ties in a seeded random order (a stable sort of a
    shuffle)."""
    shuffled = list(values)
    rng.shuffle(shuffled)
    return sorted(shuffled, key=lambda v: counts[v])[:k]


def _coverage(prompts, counts: dict[str, Counter]) -> str:
    rows = [
        {
            "field": name,
            "values": prompts.lines(
                "coverage_value",
                [{"value": v, "count": n} for v, n in c.most_common(5)],
                empty=None,
                sep=", ",
            ),
        }
        for name, c in counts.items()
        if c
    ]
    return prompts.lines("coverage_line", rows, empty="nothing_yet")


def writer_messages(ctx: Context, text: str) -> list:
    """Fresh eyes: the expert system prompt and one instruction, nothing of the corpus or the
    conductor."""
    return [SystemMessage(res.prompts(ctx).render("expert.md")), HumanMessage(text)]


# -- nodes -----------------------------------------------------------------------------------------
async def offer(state: DocState, runtime: Runtime[Context]) -> dict:
    """Open the conductor's brief: what the corpus holds (and, where the task prompt shows it, what
    is nearest), what it may choose."""
    ctx = runtime.context
    prompts, memory = res.prompts(ctx), res.memory(ctx)
    domain = prompts.domain
    # the memory may live in another process (graph/workers.py): asked off the event loop
    counts, size = await asyncio.to_thread(lambda: (memory.counts(list(FIELDS)), len(memory)))
    rng = random.Random(f"{ctx.seed}:offer:{state.index}:{size}")
    options = {
        field: least_covered(getattr(domain, attr), counts[field], ctx.choices, rng)
        for field, attr in FIELDS.items()
    }
    # The prompt file decides the conductor's memory view: recall costs an embedding only where
    # shown.
    near = await recall_nearest(ctx, state) if prompts.uses("structured/task.md", "recall") else []
    if state.seed_doc:
        seed = prompts.render(
            "structured/seed_document.md", document=state.seed_doc[:SEED_DOC_CHARS]
        )
    else:
        seed = prompts.render("structured/seed_keywords.md", keywords=", ".join(state.seeds))
    task = prompts.render(
        "structured/task.md",
        domain=domain.name,
        seed=seed,
        corpus_size=size,
        coverage=_coverage(
            prompts,
            {
                "categories": counts["category"],
                "genres": counts["genre"],
                "audiences": counts["audience"],
            },
        ),
        recall=prompts.lines(
            "nearest_line",
            [{"summary": r.get("summary", "")} for _, r in near],
            empty="first_document",
        ),
        categories="; ".join(options["category"]),
        genres="; ".join(options["genre"]),
        audiences="; ".join(options["audience"]),
    )
    system = prompts.render(
        "structured/conductor.md", domain=domain.name, description=domain.description
    )
    return {
        "messages": [SystemMessage(system), HumanMessage(task)],
        "options": options,
        "protocol": "structured",
        "round": 0,
        "protocol_errors": 0,
        "revisions": 0,
        "experts": [],
        "reviews": [],
        "source": "conductor",
        "brief": None,
    }


async def plan(state: DocState, runtime: Runtime[Context]) -> dict:
    """One conductor turn: the brief, constrained by the grammar of the options offered."""
    ctx = runtime.context
    prompts = res.prompts(ctx)
    options = state.options
    rules = grammar.render(prompts.texts["brief.gbnf"], {**options, "keyword": state.seeds})
    reply, usage = await ask(res.conductor_router(ctx), state.messages, "conductor", rules)
    update = {"messages": [reply], "round": state.round + 1, "usage": usage, "draft": None}
    try:
        brief = parse_brief(reply.text, options)
    except BriefError as e:
        note = prompts.render("structured/brief_error.md", error=str(e))
        return {
            **update,
            "messages": [reply, HumanMessage(note)],
            "brief": None,
            "protocol_errors": state.protocol_errors + 1,
        }
    keywords = ", ".join(state.seeds) or brief.category
    instruction = prompts.render(
        "structured/write.md", domain=prompts.domain.name, keywords=keywords, **brief.as_dict()
    )
    return {
        **update,
        "brief": brief.as_dict(),
        "instruction": instruction,
        "genre": brief.genre,
        "audience": brief.audience,
    }


async def write(state: DocState, runtime: Runtime[Context]) -> dict:
    """The writer the conductor named drafts the document from the instruction alone."""
    ctx = runtime.context
    name = state.brief["expert"]
    # the quality gate's note, after a refused draft
    asked = with_fix(ctx, state.instruction, state.fix)
    reply, usage = await ask(res.expert_router(ctx), writer_messages(ctx, asked), f"expert:{name}")
    return {
        "draft": _draft(ctx, state, reply.text),
        "source": "conductor",
        "usage": usage,
        "experts": state.experts + [name],
        "written_by": "experts",
        "writer": name,
    }


async def review(state: DocState, runtime: Runtime[Context]) -> dict:
    """A second expert, fresh eyes too, reads the draft against the brief: keep, or one fix."""
    ctx = runtime.context
    prompts = res.prompts(ctx)
    brief = state.brief
    text = prompts.render(
        "structured/review.md",
        domain=prompts.domain.name,
        draft=state.draft["text"][:DRAFT_CHARS],
        genre=brief["genre"],
        audience=brief["audience"],
    )
    reply, usage = await ask(
        res.expert_router(ctx),
        writer_messages(ctx, text),
        "expert:Reviewer",
        prompts.texts["review.gbnf"],
    )
    verdict = parse_review(reply.text)
    return {
        "reviews": state.reviews
        + [{"verdict": "keep" if verdict.keep else "revise", "fix": verdict.fix}],
        "usage": usage,
        "experts": state.experts + ["Reviewer"],
    }


async def rewrite(state: DocState, runtime: Runtime[Context]) -> dict:
    """The writer rewrites its draft with the reviewer's fix; an unusable rewrite keeps the
    draft."""
    ctx = runtime.context
    prompts = res.prompts(ctx)
    name = state.brief["expert"]
    text = prompts.render(
        "structured/rewrite.md",
        instruction=state.instruction,
        fix=state.reviews[-1]["fix"],
        draft=state.draft["text"][:DRAFT_CHARS],
    )
    reply, usage = await ask(res.expert_router(ctx), writer_messages(ctx, text), f"expert:{name}")
    return {
        "draft": _draft(ctx, state, reply.text) or state.draft,
        "usage": usage,
        "experts": state.experts + [name],
    }


def redo(state: DocState, runtime: Runtime[Context]) -> dict:
    """A draft the quality gate refused: the same writer writes again, told only what to fix."""
    return {"revisions": state.revisions + 1, "reviews": []}


def replan(state: DocState, runtime: Runtime[Context]) -> dict:
    """A draft too close to the corpus: the conductor writes a new brief, told what it collided
    with."""
    ctx = runtime.context
    verdict = state.verdict
    note = res.prompts(ctx).render(
        "structured/too_similar.md",
        similarity=f"{verdict['similarity']:.3f}",
        threshold=f"{ctx.threshold:.2f}",
        summary=verdict["near_summary"],
    )
    messages = [HumanMessage(note)] if isinstance(state.messages[-1], AIMessage) else []
    return {"messages": messages, "revisions": state.revisions + 1, "reviews": []}


def _draft(ctx: Context, state: DocState, reply: str) -> Draft | None:
    text = document_text(reply)
    if text is None:
        return None
    brief = state.brief
    summary = res.prompts(ctx).render("structured/summary.md", **brief).strip()
    return Draft(text=text, summary=summary, category=brief["category"], guessed=[])


# -- routing ---------------------------------------------------------------------------------------
def after_plan(state: DocState, runtime: Runtime[Context]) -> str:
    ctx = runtime.context
    if state.brief:
        return "write"
    if state.protocol_errors >= ctx.max_protocol_errors or state.round >= ctx.max_rounds:
        return "fallback"
    return "plan"


def after_write(state: DocState, runtime: Runtime[Context]) -> str:
    return "review" if state.draft and len(state.reviews) < runtime.context.reviews else "gate"


def after_review(state: DocState, runtime: Runtime[Context]) -> str:
    return "gate" if state.reviews[-1]["verdict"] == "keep" else "rewrite"


def after_rewrite(state: DocState, runtime: Runtime[Context]) -> str:
    return after_write(state, runtime)
