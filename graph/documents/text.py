"""The paper's free-text conductor protocol (`--protocol text`): each conductor turn (`ROUND k:`)
consults experts (`Expert <Name>:` blocks, agents/protocol.py) or gives `>> FINAL ANSWER`; the
experts answer in parallel, each in a fresh conversation, and their outputs are relayed back.

    recall -> conductor --(expert calls)--> expert x N (parallel, Send) -> relay -> conductor
                 |------(malformed turn, or a final answer the experts did not write)-->
                 |          protocol_error -> conductor
                 '------(final answer)--> gate (after_gate in nodes.py; after_revise below)
"""

from __future__ import annotations

import asyncio

import openai
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from langgraph.types import Send

from agents.prompts import starting_at
from agents.protocol import expert_share, parse_turn
from graph.documents.nodes import expert_messages, recall_nearest, seed_text
from graph.documents.state import DocState, draft_of
from graph.session import Run
from graph.steps import ask, refused_for_quality, too_similar


def round_message(run: Run, taken: int, body: str) -> HumanMessage:
    """A user turn, prefixed with the round the conductor is about to take (`taken` + 1); the last
    one says so."""
    k = taken + 1
    if k >= run.settings.max_rounds:
        body = f"{body}\n\n{run.prompts.render('last_round.md')}"
    return HumanMessage(run.prompts.fragment("round", round=k, body=body))


async def recall(state: DocState, runtime: Runtime) -> dict:
    """Open the conductor's conversation: its system prompt, the seed and what the corpus already
    holds."""
    run = Run.of(runtime)
    prompts, memory = run.prompts, run.memory
    near = await recall_nearest(run, state)
    recalled = [
        {
            "category": r.get("category", "?"),
            "summary": r.get("summary", ""),
            "similarity": f"{s:.2f}",
        }
        for s, r in near
    ]
    # the memory may live in another process (graph/workers.py): asked off the event loop
    held, size = await asyncio.to_thread(lambda: (memory.category_counts(), len(memory)))
    counts = [{"category": c, "count": n} for c, n in held.most_common(15)]
    task = prompts.render(
        "task.md",
        domain=prompts.domain.name,
        description=prompts.domain.description,
        seeds=seed_text(run, state),
        corpus_size=size,
        categories=prompts.lines("category_line", counts),
        recall=prompts.lines("recall_line", recalled, empty="first_document"),
    )
    system = prompts.render(
        "conductor.md", domain=prompts.domain.name, description=prompts.domain.description
    )
    return {
        "messages": [SystemMessage(system), round_message(run, 0, task)],
        "round": 0,
        "protocol": "text",
        "protocol_errors": 0,
        "revisions": 0,
        "experts": [],
        "source": "conductor",
        "instruction": task,
    }


async def conductor(state: DocState, runtime: Runtime) -> dict:
    """One conductor turn: consult experts, finish, or break the protocol. A final answer counts
    only when its experts wrote it (min_expert_share of its text from their replies); one they did
    not is a protocol error that tells the conductor so."""
    run = Run.of(runtime)
    rules = run.prompts.texts["conductor.gbnf"]
    if run.settings.min_expert_share > 0 and not state.expert_replies:
        # No expert has written anything yet, so no final answer could be accepted: where the
        # server takes grammars, this turn can only consult (the grammar's `calls` rule).
        rules = starting_at(rules, "calls")
    try:
        reply, usage = await ask(run.conductor, state.messages, "conductor", rules)
    except openai.BadRequestError as e:  # typically the conversation outgrew the model's context
        return {
            "calls": [],
            "draft": None,
            "fallback_reason": f"conductor request refused: {e.code or e.status_code}",
        }
    turn = parse_turn(reply.text, run.settings.max_experts_per_turn)
    round_ = state.round + 1
    update = {
        "messages": [reply],
        "round": round_,
        "usage": usage,
        "premature": False,
        "calls": [{"name": c.name, "instruction": c.instruction} for c in turn.calls],
        "draft": None,
    }
    notes = [turn.error, *turn.notes]
    if turn.final:
        written: dict[str, list[str]] = {}
        for r in state.expert_replies:
            written.setdefault(r["name"], []).append(r["text"])
        share, writer = expert_share(turn.final.text, written)
        if share >= run.settings.min_expert_share:
            update.update(
                draft=draft_of(turn.final),
                source="conductor",
                expert_share=round(share, 3),
                writer=writer,
                written_by="experts" if writer and share >= 0.5 else "conductor",
            )
        else:
            notes.append(
                f"final answer not written by the experts ({share:.0%} of it from their replies)"
            )
            update.update(
                calls=[],
                premature=True,
                expert_share=round(share, 3),
                protocol_errors=state.protocol_errors + 1,
            )
    elif not turn.calls:
        update["protocol_errors"] = state.protocol_errors + 1
    if any(notes):  # for the record: why a turn failed or was trimmed
        update["protocol_notes"] = state.protocol_notes + [
            f"round {round_}: {n}" for n in notes if n
        ]
    return update


async def expert(call: dict, runtime: Runtime) -> dict:
    """A fresh conversation: the expert sees its system prompt and the conductor's instruction,
    nothing else."""
    run = Run.of(runtime)
    messages = expert_messages(run, call["name"], call["instruction"])
    reply, usage = await ask(run.writer, messages, f"expert:{call['name']}")
    return {
        "replies": [{"order": call["order"], "name": call["name"], "text": reply.text.strip()}],
        "usage": usage,
    }


def relay(state: DocState, runtime: Runtime) -> dict:
    """Hand the experts' outputs back to the conductor in one user turn, in the order it called
    them."""
    run = Run.of(runtime)
    replies = sorted(state.replies, key=lambda r: r["order"])
    body = run.prompts.lines("expert_output", replies, empty=None, sep="\n\n")
    return {
        "messages": [round_message(run, state.round, body)],
        "replies": None,
        "experts": state.experts + [r["name"] for r in replies],
        "expert_replies": state.expert_replies
        + [{"name": r["name"], "text": r["text"]} for r in replies],
    }


def protocol_error(state: DocState, runtime: Runtime) -> dict:
    """Tell the conductor what was wrong with its turn: the format, or a final answer its experts
    did not write."""
    run = Run.of(runtime)
    prompts = run.prompts
    if state.premature:
        body = prompts.render(
            "final_needs_experts.md",
            share=f"{state.expert_share:.0%}",
            required=f"{run.settings.min_expert_share:.0%}",
        )
    else:
        body = prompts.render("protocol_error.md")
    return {"messages": [round_message(run, state.round, body)]}


def revise(state: DocState, runtime: Runtime) -> dict:
    """Send a refused draft back: to the conductor (what the quality gate found, or what it was too
    close to), or to the fallback writer if it wrote it (which reads `fix` itself)."""
    run = Run.of(runtime)
    verdict = state.verdict
    update = {"revisions": state.revisions + 1}
    if state.source == "conductor" and state.round < run.settings.max_rounds:
        prompts = run.prompts
        if refused_for_quality(verdict):
            body = prompts.render("quality_conductor.md", problem=state.fix)
        else:
            summary = verdict["near_summary"]
            threshold = run.settings.threshold
            body = too_similar(prompts, "too_similar.md", verdict, threshold, summary=summary)
        update["messages"] = [round_message(run, state.round, body)]
    return update


# -- routing ---------------------------------------------------------------------------------------
def after_conductor(state: DocState, runtime: Runtime):
    ctx = Run.of(runtime).settings
    if state.draft:
        return "gate"
    if state.fallback_reason:  # the server refused the conversation (it outgrew the context)
        return "fallback"
    if state.calls and state.round < ctx.max_rounds:
        return [Send("expert", {"order": i, **call}) for i, call in enumerate(state.calls)]
    if state.protocol_errors >= ctx.max_protocol_errors or state.round >= ctx.max_rounds:
        return "fallback"
    return "protocol_error"


def after_revise(state: DocState, runtime: Runtime) -> str:
    if state.source == "conductor" and state.round < Run.of(runtime).settings.max_rounds:
        return "conductor"
    return "fallback"
