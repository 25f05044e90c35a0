"""The template baselines MetaSynth is measured against: same model, same budget, same record schema.

    template:        seed -> prompt (fixed template + keywords)                 -> write -> commit
    template-prior:  seed -> prompt (+ the most recent corpus documents)        -> write -> commit
    template-icl:    seed -> prompt (+ real documents drawn from --seed-docs)   -> write -> commit

No conductor, no experts, no novelty gate: every usable document is committed (its similarity to
the nearest earlier document is still recorded), because the gate is part of what MetaSynth adds.
"""

from __future__ import annotations

import asyncio
import math
import random

from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agents.protocol import parse_final
from graph import resources as res
from graph.configuration import Context
from graph.nodes import ask, embed, make_record
from graph.seeds import sample_seeds
from graph.state import DocInput, TemplateState, draft_of

SHOWN_CHARS = 1500  # per document put in the prompt: five of them stay well inside SmolLM2's 8k context


def _quoted(ctx: Context, texts: list[str]) -> str:
    return res.prompts(ctx).lines("quoted", [{"text": t[:SHOWN_CHARS]} for t in texts], empty=None, sep="\n\n")


def _instruction(ctx: Context, state: TemplateState) -> str:
    prompts = res.prompts(ctx)
    return prompts.render("templates/plain.md", domain=prompts.domain.name, description=prompts.domain.description,
                          keywords=", ".join(state.seeds))


# -- nodes -----------------------------------------------------------------------------------------
async def seed(state: TemplateState, runtime: Runtime[Context]) -> dict:
    """Keywords only, drawn exactly as the MetaSynth graph draws them for the same document index."""
    ctx = runtime.context
    await res.ready(ctx, picker=False)
    if state.seeds:
        return {}
    drawn = sample_seeds(res.prompts(ctx).domain, ctx.keywords, random.Random(f"{ctx.seed}:{state.index}"))
    return {"seeds": drawn["seeds"]}


def plain_prompt(state: TemplateState, runtime: Runtime[Context]) -> dict:
    return {"method": "template", "shown": [], "messages": [HumanMessage(_instruction(runtime.context, state))]}


def prior_prompt(state: TemplateState, runtime: Runtime[Context]) -> dict:
    """The fixed prompt after the corpus's most recent documents, with "make it different"."""
    ctx = runtime.context
    recent = [r["text"] for r in res.memory(ctx).records[-ctx.recall_k:]] if ctx.recall_k else []
    body = _instruction(ctx, state)
    if recent:
        body = f"{res.prompts(ctx).render('templates/prior.md', documents=_quoted(ctx, recent))}\n\n{body}"
    return {"method": "template-prior", "shown": recent, "messages": [HumanMessage(body)]}


def icl_prompt(state: TemplateState, runtime: Runtime[Context]) -> dict:
    """The fixed prompt after real documents drawn at random (seeded by the document index)."""
    ctx = runtime.context
    pool = res.seed_texts(ctx)
    if not pool:
        raise ValueError("template-icl needs real example documents: set seed_docs (--seed-docs FILE.jsonl)")
    rng = random.Random(f"{ctx.seed}:icl:{state.index}")
    examples = rng.sample(pool, min(ctx.recall_k, len(pool)))
    prompts = res.prompts(ctx)
    shown = prompts.render("templates/icl.md", domain=prompts.domain.name, examples=_quoted(ctx, examples))
    body = f"{shown}\n\n{_instruction(ctx, state)}"
    return {"method": "template-icl", "shown": examples, "messages": [HumanMessage(body)]}


async def write(state: TemplateState, runtime: Runtime[Context]) -> dict:
    """One call; the reply is the document (chat preambles stripped, too-short replies unusable)."""
    ctx = runtime.context
    reply, usage = await ask(res.expert_router(ctx), state.messages, state.method)
    return {"messages": [reply], "draft": draft_of(parse_final(reply.text)), "round": 1, "usage": usage}


async def commit(state: TemplateState, runtime: Runtime[Context]) -> dict:
    ctx = runtime.context
    memory = res.memory(ctx)
    draft = state.draft
    if not draft:
        reply = state.messages[-1].text if state.messages else ""
        record = make_record(ctx, state, "rejected", {"text": reply}, state.method, reason="no document")
        await asyncio.to_thread(memory.reject, record)
        return {"result": record, "ended": "rejected"}
    vector = await embed(draft["text"])
    if "category" in draft["guessed"]:
        draft = {**draft, "category": res.category_of(ctx, vector)}
    record = make_record(ctx, state, "final", draft, state.method)
    verdict = await asyncio.to_thread(memory.admit, record, vector, math.inf)  # no gate: always admitted
    return {"result": verdict.record, "ended": "final"}


# -- graphs ----------------------------------------------------------------------------------------
PROMPT_NODES = {"template": plain_prompt, "template-prior": prior_prompt, "template-icl": icl_prompt}


def build_template_graph(method: str):
    builder = StateGraph(TemplateState, context_schema=Context, input_schema=DocInput)
    builder.add_node("seed", seed)
    builder.add_node("prompt", PROMPT_NODES[method])
    builder.add_node("write", write)
    builder.add_node("commit", commit)
    builder.add_edge(START, "seed")
    builder.add_edge("seed", "prompt")
    builder.add_edge("prompt", "write")
    builder.add_edge("write", "commit")
    builder.add_edge("commit", END)
    return builder.compile(name=method)


# What langgraph.json exposes.
template = build_template_graph("template")
template_prior = build_template_graph("template-prior")
template_icl = build_template_graph("template-icl")
