"""The document graph's nodes that both protocols share: the seed a document is conditioned on,
the fallback writer, the gates, and the routes out of them. The protocols' own nodes and routes:
text.py (the paper's free-text turns) and structured.py (a grammar-bounded brief); the wiring:
graph.py."""

from __future__ import annotations

import asyncio
import random

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END
from langgraph.runtime import Runtime

from agents.protocol import parse_final
from graph.documents.state import DocState, draft_of
from graph.session import Run
from graph.steps import ask, judge, refused_for_quality, with_fix

SEED_DOC_CHARS = 2000  # how much of a real seed document the conductor sees


def seed_text(run: Run, state: DocState) -> str:
    """The seed as the conductor (and the fallback writer) read it."""
    prompts = run.prompts
    if state.seed_doc:
        return prompts.fragment("seed_document", document=state.seed_doc[:SEED_DOC_CHARS])
    text = prompts.fragment("seed_keywords", keywords=", ".join(state.seeds))
    if state.genre:
        text += prompts.fragment("seed_genre", genre=state.genre)
    if state.audience:
        text += prompts.fragment("seed_audience", audience=state.audience)
    return text


def expert_messages(run: Run, name: str, instruction: str) -> list:
    """Fresh eyes: an expert sees its system prompt, its name and one instruction, nothing else."""
    return [
        SystemMessage(run.prompts.render("expert.md")),
        HumanMessage(run.prompts.fragment("expert_turn", name=name, instruction=instruction)),
    ]


async def seed(state: DocState, runtime: Runtime) -> dict:
    """Sample the keywords (or take the next real seed document) this document is conditioned on.
    The first node: the run's parts built on first use (and, under Studio, the run itself) are
    built here, off the event loop."""
    run = await asyncio.to_thread(lambda: Run.of(runtime).ready())
    if state.seeds or state.seed_doc:
        return {}
    if run.seeds:
        return {"seed_doc": await asyncio.to_thread(run.seeds.next)}
    rng = random.Random(f"{run.settings.seed}:{state.index}")
    return run.prompts.domain.sample_seeds(run.settings.keywords, rng)


async def fallback(state: DocState, runtime: Runtime) -> dict:
    """The documented way out for a conductor that cannot keep the protocol: one expert writes the
    document."""
    run = Run.of(runtime)
    prompts = run.prompts
    name = prompts.domain.fallback_expert
    # Fresh eyes, as for every expert: no prior documents (a small model copies what it is shown).
    instruction = prompts.render(
        "fallback.md",
        domain=prompts.domain.name,
        description=prompts.domain.description,
        seeds=seed_text(run, state),
    )
    asked = with_fix(prompts, instruction, state.fix if state.source == "fallback" else "")
    reply, usage = await ask(run.writer, expert_messages(run, name, asked), f"fallback:{name}")
    errors = state.protocol_errors >= run.settings.max_protocol_errors
    reason = state.fallback_reason or ("protocol errors" if errors else "round cap")
    return {
        "draft": draft_of(parse_final(reply.text)),
        "source": "fallback",
        "fallback_reason": reason,
        "usage": usage,
        "experts": state.experts + [name],
        "instruction": instruction,
        "written_by": "fallback",
        "writer": name,
    }


async def gate(state: DocState, runtime: Runtime) -> dict:
    """The quality gate, then the novelty gate and the commit (atomic in Memory.admit)."""
    if not state.draft:
        return {"verdict": {"accepted": False, "reason": "no document"}}
    run = Run.of(runtime)
    ended = "final" if state.source == "conductor" else "fallback"
    return await judge(run, state, state.draft, ended, run.settings.threshold)


async def recall_nearest(run: Run, state: DocState) -> list[tuple[float, dict]]:
    """The committed documents nearest to the seed (the conductor's recall)."""
    vector = (
        await asyncio.to_thread(run.embedder.encode, [state.seed_doc or " ".join(state.seeds)])
    )[0]
    return await asyncio.to_thread(run.memory.nearest, vector, run.settings.recall_k)


# -- routing ---------------------------------------------------------------------------------------
def after_seed(state: DocState, runtime: Runtime) -> str:
    return "offer" if Run.of(runtime).protocol == "structured" else "recall"


def after_gate(state: DocState, runtime: Runtime) -> str:
    if state.verdict.get("accepted"):
        return END
    if state.draft and state.revisions < Run.of(runtime).settings.max_revisions:
        if state.protocol == "structured" and state.source == "conductor":
            # the writer again (refused by the quality gate), or a new brief (too similar)
            return "redo" if refused_for_quality(state.verdict) else "replan"
        return "revise"
    return "reject"
