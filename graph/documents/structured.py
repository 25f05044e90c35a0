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

from agents.protocol import BriefError, document_text, parse_brief, parse_review
from graph.documents.nodes import SEED_DOC_CHARS, recall_nearest
from graph.documents.state import DocState, Draft
from graph.session import Run
from graph.steps import ask, consult, least_covered, too_similar, with_fix

# brief field -> Domain list
FIELDS = {"category": "categories", "genre": "genres", "audience": "audiences"}
DRAFT_CHARS = 4000  # of a draft shown to the reviewer and the rewriter


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


# -- nodes -----------------------------------------------------------------------------------------
async def offer(state: DocState, runtime: Runtime) -> dict:
    """Open the conductor's brief: what the corpus holds (and, where the task prompt shows it, what
    is nearest), what it may choose."""
    run = Run.of(runtime)
    prompts, memory = run.prompts, run.memory
    domain = prompts.domain
    # the memory may live in another process (graph/workers.py): asked off the event loop
    counts, size = await asyncio.to_thread(lambda: (memory.counts(list(FIELDS)), len(memory)))
    rng = random.Random(f"{run.settings.seed}:offer:{state.index}:{size}")
    options = {
        field: least_covered(getattr(domain, attr), counts[field], run.settings.choices, rng)
        for field, attr in FIELDS.items()
    }
    # The prompt file decides the conductor's memory view: recall costs an embedding only where
    # shown.
    near = await recall_nearest(run, state) if prompts.uses("structured/task.md", "recall") else []
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


async def plan(state: DocState, runtime: Runtime) -> dict:
    """One conductor turn: the brief, constrained by the grammar of the options offered."""
    run = Run.of(runtime)
    prompts = run.prompts
    options = state.options
    rules = prompts.grammar("brief.gbnf", {**options, "keyword": state.seeds})
    reply, usage = await ask(run.conductor, state.messages, "conductor", rules)
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


async def write(state: DocState, runtime: Runtime) -> dict:
    """The writer the conductor named drafts the document from the instruction alone."""
    run = Run.of(runtime)
    name = state.brief["expert"]
    # the quality gate's note, after a refused draft
    asked = with_fix(run.prompts, state.instruction, state.fix)
    reply, usage = await consult(run, name, asked)
    return {
        "draft": _draft(run, state, reply.text),
        "source": "conductor",
        "usage": usage,
        "experts": state.experts + [name],
        "written_by": "experts",
        "writer": name,
    }


async def review(state: DocState, runtime: Runtime) -> dict:
    """A second expert, fresh eyes too, reads the draft against the brief: keep, or one fix."""
    run = Run.of(runtime)
    prompts = run.prompts
    brief = state.brief
    text = prompts.render(
        "structured/review.md",
        domain=prompts.domain.name,
        draft=state.draft["text"][:DRAFT_CHARS],
        genre=brief["genre"],
        audience=brief["audience"],
    )
    reply, usage = await consult(run, "Reviewer", text, prompts.texts["review.gbnf"])
    verdict = parse_review(reply.text)
    return {
        "reviews": state.reviews
        + [{"verdict": "keep" if verdict.keep else "revise", "fix": verdict.fix}],
        "usage": usage,
        "experts": state.experts + ["Reviewer"],
    }


async def rewrite(state: DocState, runtime: Runtime) -> dict:
    """The writer rewrites its draft with the reviewer's fix; an unusable rewrite keeps the
    draft."""
    run = Run.of(runtime)
    prompts = run.prompts
    name = state.brief["expert"]
    text = prompts.render(
        "structured/rewrite.md",
        instruction=state.instruction,
        fix=state.reviews[-1]["fix"],
        draft=state.draft["text"][:DRAFT_CHARS],
    )
    reply, usage = await consult(run, name, text)
    return {
        "draft": _draft(run, state, reply.text) or state.draft,
        "usage": usage,
        "experts": state.experts + [name],
    }


def redo(state: DocState, runtime: Runtime) -> dict:
    """A draft the quality gate refused: the same writer writes again (with the gate's note, if
    any)."""
    return {"revisions": state.revisions + 1, "reviews": []}


def replan(state: DocState, runtime: Runtime) -> dict:
    """A draft too close to the corpus: the conductor writes a new brief, told what it collided
    with."""
    run, verdict = Run.of(runtime), state.verdict
    summary = verdict["near_summary"]
    note = too_similar(
        run.prompts, "structured/too_similar.md", verdict, run.settings.threshold, summary=summary
    )
    messages = [HumanMessage(note)] if isinstance(state.messages[-1], AIMessage) else []
    return {"messages": messages, "revisions": state.revisions + 1, "reviews": []}


def _draft(run: Run, state: DocState, reply: str) -> Draft | None:
    text = document_text(reply)
    if text is None:
        return None
    brief = state.brief
    summary = run.prompts.render("structured/summary.md", **brief).strip()
    return Draft(text=text, summary=summary, category=brief["category"], guessed=[])


# -- routing ---------------------------------------------------------------------------------------
def after_plan(state: DocState, runtime: Runtime) -> str:
    run = Run.of(runtime)
    if state.brief:
        return "write"
    if (
        state.protocol_errors >= run.settings.max_protocol_errors
        or state.round >= run.settings.max_rounds
    ):
        return "fallback"
    return "plan"


def after_write(state: DocState, runtime: Runtime) -> str:
    reviews = Run.of(runtime).settings.reviews
    return "review" if state.draft and len(state.reviews) < reviews else "gate"


def after_review(state: DocState, runtime: Runtime) -> str:
    return "gate" if state.reviews[-1]["verdict"] == "keep" else "rewrite"


def after_rewrite(state: DocState, runtime: Runtime) -> str:
    return after_write(state, runtime)
