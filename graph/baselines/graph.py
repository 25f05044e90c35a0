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

import asyncio
import math
import random
from dataclasses import dataclass, field

from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agents.protocol import parse_final
from graph.documents.state import DocInput, Document, Draft, draft_of
from graph.session import Run
from graph.settings import IclSettings, PriorSettings, TemplateSettings
from graph.steps import ask, judge, reject, with_fix


@dataclass(kw_only=True)
class TemplateState(Document):
    """A baseline document: one prompt, one reply."""

    # documents put in the prompt: recent corpus documents or real examples
    shown: list[str] = field(default_factory=list)
    usable: bool = False  # the latest reply was long enough to be a document


# per document put in the prompt: five of them stay well inside SmolLM2's 8k context
SHOWN_CHARS = 1500


def _quoted(run: Run, texts: list[str]) -> str:
    return run.prompts.lines(
        "quoted", [{"text": t[:SHOWN_CHARS]} for t in texts], empty=None, sep="\n\n"
    )


def _instruction(run: Run, state: TemplateState) -> str:
    prompts = run.prompts
    return prompts.render(
        "templates/plain.md",
        domain=prompts.domain.name,
        description=prompts.domain.description,
        keywords=", ".join(state.seeds),
    )


# -- nodes -----------------------------------------------------------------------------------------
async def seed(state: TemplateState, runtime: Runtime) -> dict:
    """Keywords only, drawn exactly as the MetaSynth graph draws them for the same document
    index. The first node: the run's parts built on first use (and, under Studio, the run itself)
    are built here, off the event loop."""
    run = await asyncio.to_thread(lambda: Run.of(runtime).ready())
    if state.seeds:
        return {}
    rng = random.Random(f"{run.settings.seed}:{state.index}")
    return {"seeds": run.prompts.domain.sample_seeds(run.settings.keywords, rng)["seeds"]}


def plain_prompt(state: TemplateState, runtime: Runtime) -> dict:
    instruction = _instruction(Run.of(runtime), state)
    return {
        "method": "template",
        "shown": [],
        "messages": [HumanMessage(instruction)],
        "instruction": instruction,
    }


async def prior_prompt(state: TemplateState, runtime: Runtime) -> dict:
    """The fixed prompt after the corpus's most recent documents, with "make it different"."""
    run = Run.of(runtime)
    # the memory may live in another process (graph/workers.py): asked off the event loop
    recent = await asyncio.to_thread(run.memory.recent, run.settings.recall_k)
    instruction = body = _instruction(run, state)
    if recent:
        body = (
            f"{run.prompts.render('templates/prior.md', documents=_quoted(run, recent))}\n\n{body}"
        )
    return {
        "method": "template-prior",
        "shown": recent,
        "messages": [HumanMessage(body)],
        "instruction": instruction,
    }


def icl_prompt(state: TemplateState, runtime: Runtime) -> dict:
    """The fixed prompt after real documents drawn at random (seeded by the document index)."""
    run = Run.of(runtime)
    pool = run.examples
    if not pool:
        raise ValueError(
            "template-icl needs real example documents: set seed_docs (--seed-docs FILE.jsonl)"
        )
    rng = random.Random(f"{run.settings.seed}:icl:{state.index}")
    examples = rng.sample(pool, min(run.settings.recall_k, len(pool)))
    prompts = run.prompts
    shown = prompts.render(
        "templates/icl.md", domain=prompts.domain.name, examples=_quoted(run, examples)
    )
    instruction = _instruction(run, state)
    body = f"{shown}\n\n{instruction}"
    return {
        "method": "template-icl",
        "shown": examples,
        "messages": [HumanMessage(body)],
        "instruction": instruction,
    }


async def write(state: TemplateState, runtime: Runtime) -> dict:
    """One call (a fresh one after a refused draft, with the gate's note if any); the reply is the
    document (chat preambles stripped, too-short replies unusable)."""
    run = Run.of(runtime)
    prompt = HumanMessage(with_fix(run.prompts, state.messages[0].text, state.fix))
    reply, usage = await ask(run.writer, [prompt], state.method)
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


async def commit(state: TemplateState, runtime: Runtime) -> dict:
    """The quality gate and the commit; no novelty gate (math.inf: always novel enough)."""
    if not state.usable:
        return {"verdict": {"accepted": False, "reason": "no document"}}
    return await judge(Run.of(runtime), state, state.draft, "final", math.inf)


def redo(state: TemplateState, runtime: Runtime) -> dict:
    """A draft the quality gate refused: the writer is asked again (with the gate's note, if
    any)."""
    return {"revisions": state.revisions + 1}


def after_commit(state: TemplateState, runtime: Runtime) -> str:
    if state.verdict.get("accepted"):
        return END
    budget_left = state.revisions < Run.of(runtime).settings.max_revisions
    return "redo" if state.usable and budget_left else "reject"


# -- graphs ----------------------------------------------------------------------------------------
BASELINES = {  # method: its prompt node, its settings
    "template": (plain_prompt, TemplateSettings),
    "template-prior": (prior_prompt, PriorSettings),
    "template-icl": (icl_prompt, IclSettings),
}


def build_template_graph(method: str):
    prompt, settings = BASELINES[method]
    builder = StateGraph(TemplateState, context_schema=settings, input_schema=DocInput)
    builder.add_node("seed", seed)
    builder.add_node("prompt", prompt)
    builder.add_node("write", write)
    builder.add_node("commit", commit)
    builder.add_node("redo", redo)
    builder.add_node("reject", reject)
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
