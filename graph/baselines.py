"""The template baselines MetaSynth is measured against: same model, same budget, same record
schema.

    template:        seed -> prompt (fixed template + keywords)                 -> write -> commit
    template-prior:  seed -> prompt (+ the most recent corpus documents)        -> write -> commit
    template-icl:    seed -> prompt (+ real documents drawn from --seed-docs)   -> write -> commit

    commit --(passes the quality gate)--> END
         |--(refused, budget left)--> redo -> write
         '--(else)--> reject

No conductor, no experts, no novelty gate (its similarity to the nearest earlier document is still
recorded), because the novelty gate is part of what MetaSynth adds. The quality gate is the same as
MetaSynth's, with the same revision budget, so that comparisons stay fair.
"""

from __future__ import annotations

import math
import random

from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agents.protocol import parse_final
from graph import nodes
from graph import resources as res
from graph.configuration import Context
from graph.nodes import ask, judge, with_fix
from graph.seeds import sample_seeds
from graph.state import DocInput, Draft, TemplateState, draft_of

# per document put in the prompt: five of them stay well inside SmolLM2's 8k context
SHOWN_CHARS = 1500


def _quoted(ctx: Context, texts: list[str]) -> str:
    return res.prompts(ctx).lines(
        "quoted", [{"text": t[:SHOWN_CHARS]} for t in texts], empty=None, sep="\n\n"
    )


def _instruction(ctx: Context, state: TemplateState) -> str:
    prompts = res.prompts(ctx)
    return prompts.render(
        "templates/plain.md",
        domain=prompts.domain.name,
        description=prompts.domain.description,
        keywords=", ".join(state.seeds),
    )


# -- nodes -----------------------------------------------------------------------------------------
async def seed(state: TemplateState, runtime: Runtime[Context]) -> dict:
    """Keywords only, drawn exactly as the MetaSynth graph draws them for the same document
    index."""
    ctx = runtime.context
    await res.ready(ctx, picker=False)
    if state.seeds:
        return {}
    drawn = sample_seeds(
        res.prompts(ctx).domain, ctx.keywords, random.Random(f"{ctx.seed}:{state.index}")
    )
    return {"seeds": drawn["seeds"]}


def plain_prompt(state: TemplateState, runtime: Runtime[Context]) -> dict:
    instruction = _instruction(runtime.context, state)
    return {
        "method": "template",
        "shown": [],
        "messages": [HumanMessage(instruction)],
        "instruction": instruction,
    }


def prior_prompt(state: TemplateState, runtime: Runtime[Context]) -> dict:
    """The fixed prompt after the corpus's most recent documents, with "make it different"."""
    ctx = runtime.context
    recent = res.memory(ctx).recent(ctx.recall_k)
    instruction = body = _instruction(ctx, state)
    if recent:
        body = (
            f"{res.prompts(ctx).render('templates/prior.md', documents=_quoted(ctx, recent))}"
            f"\n\n{body}"
        )
    return {
        "method": "template-prior",
        "shown": recent,
        "messages": [HumanMessage(body)],
        "instruction": instruction,
    }


def icl_prompt(state: TemplateState, runtime: Runtime[Context]) -> dict:
    """The fixed prompt after real documents drawn at random (seeded by the document index)."""
    ctx = runtime.context
    pool = res.seed_texts(ctx)
    if not pool:
        raise ValueError(
            "template-icl needs real example documents: set seed_docs (--seed-docs FILE.jsonl)"
        )
    rng = random.Random(f"{ctx.seed}:icl:{state.index}")
    examples = rng.sample(pool, min(ctx.recall_k, len(pool)))
    prompts = res.prompts(ctx)
    shown = prompts.render(
        "templates/icl.md", domain=prompts.domain.name, examples=_quoted(ctx, examples)
    )
    instruction = _instruction(ctx, state)
    body = f"{shown}\n\n{instruction}"
    return {
        "method": "template-icl",
        "shown": examples,
        "messages": [HumanMessage(body)],
        "instruction": instruction,
    }


async def write(state: TemplateState, runtime: Runtime[Context]) -> dict:
    """One call (a fresh one after a refused draft, with the gate's note); the reply is the
    document (chat preambles stripped, too-short replies unusable)."""
    ctx = runtime.context
    prompt = HumanMessage(with_fix(ctx, state.messages[0].text, state.fix))
    reply, usage = await ask(res.expert_router(ctx), [prompt], state.method)
    draft = draft_of(parse_final(reply.text)) or Draft(
        text=reply.text, summary="", category="", guessed=[]
    )
    return {
        "messages": [reply],
        "draft": draft if len(draft["text"]) else None,
        "round": state.round + 1,
        "usage": usage,
        "usable": draft_of(parse_final(reply.text)) is not None,
    }


async def commit(state: TemplateState, runtime: Runtime[Context]) -> dict:
    """The quality gate and the commit; no novelty gate (math.inf: always novel enough)."""
    if not state.usable:
        return {"verdict": {"accepted": False, "reason": "no document"}}
    return await judge(runtime.context, state, state.draft, "final", math.inf)


def redo(state: TemplateState, runtime: Runtime[Context]) -> dict:
    """A draft the quality gate refused: the writer is asked again, told only what to fix."""
    return {"revisions": state.revisions + 1}


def after_commit(state: TemplateState, runtime: Runtime[Context]) -> str:
    if state.verdict.get("accepted"):
        return END
    return "redo" if state.usable and state.revisions < runtime.context.max_revisions else "reject"


# -- graphs ----------------------------------------------------------------------------------------
PROMPT_NODES = {
    "template": plain_prompt,
    "template-prior": prior_prompt,
    "template-icl": icl_prompt,
}


def build_template_graph(method: str):
    builder = StateGraph(TemplateState, context_schema=Context, input_schema=DocInput)
    builder.add_node("seed", seed)
    builder.add_node("prompt", PROMPT_NODES[method])
    builder.add_node("write", write)
    builder.add_node("commit", commit)
    builder.add_node("redo", redo)
    builder.add_node("reject", nodes.reject)
    builder.add_edge(START, "seed")
    builder.add_edge("seed", "prompt")
    builder.add_edge("prompt", "write")
    builder.add_edge("write", "commit")
    builder.add_conditional_edges("commit", after_commit, [END, "redo", "reject"])
    builder.add_edge("redo", "write")
    builder.add_edge("reject", END)
    return builder.compile(name=method)


# What langgraph.json exposes.
template = build_template_graph("template")
template_prior = build_template_graph("template-prior")
template_icl = build_template_graph("template-icl")
