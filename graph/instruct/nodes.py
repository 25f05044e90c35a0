"""The nodes of the MetaSynth-Instruct graph (wiring: graph.py). Each is one small
step.

The conductor sees the source document and the instruction memory (type counts, the instructions
already derived from this document, the nearest ones in the set); every expert sees only its own
request: the document and the instruction in hand, never the set ("fresh eyes").
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import datetime, timezone

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END
from langgraph.runtime import Runtime

from agents.instruction import (
    complexity,
    meta_text,
    parse_check,
    parse_evolved,
    parse_instruction,
    parse_move,
    parse_plan,
    parse_response,
)
from agents.protocol import BriefError
from graph.instruct.memory import InstructRun
from graph.instruct.state import InstructState
from graph.steps import admit, ask, consult, embed, least_covered, too_similar

METHOD = "metasynth-instruct"


def source_position(seed: int, index: int, n: int) -> int:
    """Which of n source documents instruction `index` derives from: a seeded shuffle per pass, so
    every document serves once before any serves twice, in a different order each pass."""
    cycle, position = divmod(index, n)
    order = list(range(n))
    random.Random(f"{seed}:sources:{cycle}").shuffle(order)
    return order[position]


def instruction_record(run: InstructRun, state: InstructState, ended: str) -> dict:
    """One line of instructions.jsonl (docs/instruct.md has every field)."""
    p = run.instruct
    instruction, response = state.instruction or "", state.response or ""
    plan, evolution = state.plan or {}, state.evolution
    accepted = sum(1 for e in evolution[1:] if e["accepted"])
    return {
        "domain": p.domain.name,
        "method": METHOD,
        "instruction": instruction,
        "response": response,
        "text": instruction,
        "source_id": state.source["id"],
        "type": plan.get("type"),
        "plan": plan or None,
        "summary": f"{plan.get('type', '?')}: {instruction[:90]}",
        "evolution": evolution,
        "complexity": complexity(instruction, accepted),
        "experts": state.experts,
        "rounds": state.round,
        "revisions": state.revisions,
        "protocol_errors": state.protocol_errors,
        "ended": ended,
        "model": run.conductor.model,
        "expert_model": run.writer.model,
        "prompt_hash": p.hash,
        "tokens": run.count_tokens(f"{instruction}\n{response}"),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _version(state: InstructState, step: dict, check: str, why: str) -> dict:
    """Close an evolution step with the check that decided it (`answerable` accepts it;
    `paraphrase`, `drift`, `meta-text`, `no instruction`, `not answerable` reject it): record it; an
    accepted one becomes the current instruction."""
    evolution, accepted = state.evolution, check == "answerable"
    entry = {
        "version": len(evolution),
        "move": step["move"],
        "expert": step["expert"],
        "instruction": step.get("instruction"),
        "added": step.get("added", ""),
        "similarity": step.get("similarity"),
        "accepted": accepted,
        "check": check,
        "why": why,
    }
    return {
        "evolution": evolution + [entry],
        "step": None,
        "instruction": step["instruction"] if accepted else state.instruction,
    }


# -- nodes -----------------------------------------------------------------------------------------
async def source(state: InstructState, runtime: Runtime) -> dict:
    """The source document of this instruction: a seeded order over the corpus, one pass per
    cycle. The first node: under Studio it builds the run (off the event loop) on first use."""
    run = await asyncio.to_thread(lambda: InstructRun.of(runtime).ready())
    docs = run.sources
    doc = docs[source_position(run.settings.seed, state.index, len(docs))]
    return {
        "source": {
            "id": doc["id"],
            "text": doc["text"][: run.settings.document_chars],
            "category": doc.get("category"),
            "summary": doc.get("summary") or doc["text"][:150],
        }
    }


async def offer(state: InstructState, runtime: Runtime) -> dict:
    """Open the conductor's conversation: the document and what the instruction set already
    holds."""
    run = InstructRun.of(runtime)
    p, mem, src = run.instruct, run.memory, state.source
    counts = mem.type_counts()
    rng = random.Random(f"{run.settings.seed}:types:{state.index}:{len(mem)}")
    types = least_covered(list(p.types), counts, run.settings.choices, rng)
    siblings = [r["instruction"] for r in mem.records if r.get("source_id") == src["id"]]
    near = mem.nearest(await embed(run, src["text"]), run.settings.recall_k)
    task = p.render(
        "instruct/task.md",
        source_id=src["id"],
        document=src["text"],
        size=len(mem),
        coverage=p.base.lines(
            "type_count", [{"type": t, "count": n} for t, n in counts.most_common()], sep=", "
        ),
        siblings=p.base.lines("sibling_line", [{"instruction": s} for s in siblings]),
        nearest=p.base.lines(
            "nearest_instruction",
            [{"type": r.get("type"), "instruction": r["instruction"]} for _, r in near],
        ),
        types="; ".join(types),
    )
    system = p.render(
        "instruct/conductor.md", domain=p.domain.name, description=p.domain.description
    )
    return {
        "messages": [SystemMessage(system), HumanMessage(task)],
        "types": types,
        "round": 0,
        "protocol_errors": 0,
        "revisions": 0,
        "experts": [],
        "origin": "conductor",
        "plan": None,
        "evolution": [],
    }


async def plan(state: InstructState, runtime: Runtime) -> dict:
    """One conductor turn: the instruction's type (only those offered), focus and expert."""
    run = InstructRun.of(runtime)
    p = run.instruct
    rules = p.grammar("instruct/plan.gbnf", {"type": state.types})
    reply, usage = await ask(run.conductor, state.messages, "conductor", rules)
    update = {"messages": [reply], "round": state.round + 1, "usage": usage}
    try:
        chosen = parse_plan(reply.text, state.types)
    except BriefError as e:
        note = HumanMessage(p.render("instruct/plan_error.md", error=str(e)))
        return {
            **update,
            "messages": [reply, note],
            "plan": None,
            "protocol_errors": state.protocol_errors + 1,
        }
    return {**update, "plan": chosen.as_dict()}


def fallback(state: InstructState, runtime: Runtime) -> dict:
    """A conductor that cannot plan: the least-covered type, the document's summary as the focus,
    the domain's fallback expert. The rest of the chain (experts, checks, gate) is unchanged."""
    p = InstructRun.of(runtime).instruct
    return {
        "plan": {
            "type": state.types[0],
            "focus": state.source["summary"][:200],
            "expert": p.domain.fallback_expert,
        },
        "origin": "fallback",
    }


async def derive(state: InstructState, runtime: Runtime) -> dict:
    """The planned expert, fresh eyes, derives an instruction grounded in the document:
    version 0."""
    run = InstructRun.of(runtime)
    p, chosen, src = run.instruct, state.plan, state.source
    text = p.render(
        "instruct/derive.md",
        expert=chosen["expert"],
        domain=p.domain.name,
        document=src["text"],
        type=chosen["type"],
        type_description=p.types.get(chosen["type"], chosen["type"]),
        focus=chosen["focus"],
    )
    rules = p.texts["instruct/derive.gbnf"]
    reply, usage = await consult(run, chosen["expert"], text, rules)
    instruction = parse_instruction(reply.text)
    version = {
        "version": 0,
        "move": "derive",
        "expert": chosen["expert"],
        "instruction": instruction or reply.text.strip()[:500],
        "added": f"{chosen['type']} on {chosen['focus']}",
        "similarity": None,
        "accepted": instruction is not None,
        "check": "derived" if instruction else "no instruction",
        "why": "derived from the document" if instruction else "no instruction in the reply",
    }
    update = {
        "instruction": instruction,
        "evolution": [version],
        "usage": usage,
        "experts": state.experts + [chosen["expert"]],
    }
    return (
        update
        if instruction
        else {**update, "verdict": {"accepted": False, "reason": "no instruction"}}
    )


async def propose(state: InstructState, runtime: Runtime) -> dict:
    """The conductor picks this step's move (one not yet tried on this instruction; the set's least
    used first) and the expert who applies it, told how the last step went."""
    run = InstructRun.of(runtime)
    p, evolution = run.instruct, state.evolution
    tried = {e["move"] for e in evolution[1:]}
    used = Counter(
        e["move"] for r in run.memory.records for e in r.get("evolution", [])[1:] if e["accepted"]
    )
    rng = random.Random(f"{run.settings.seed}:moves:{state.index}:{len(evolution)}")
    moves = least_covered(
        [m for m in p.moves if m not in tried] or list(p.moves), used, len(p.moves), rng
    )
    last = evolution[-1]
    previous = (
        ""
        if len(evolution) == 1
        else p.base.fragment(
            "step_accepted" if last["accepted"] else "step_rejected",
            move=last["move"],
            why=last.get("why", ""),
        )
    )
    note = HumanMessage(
        p.render(
            "instruct/step.md",
            step=len(evolution),
            steps=run.settings.evolve_rounds,
            previous=previous,
            instruction=state.instruction,
            moves="; ".join(moves),
        )
    )
    rules = p.grammar("instruct/move.gbnf", {"move": moves})
    reply, usage = await ask(run.conductor, [*state.messages, note], "conductor", rules)
    update = {"messages": [note, reply], "round": state.round + 1, "usage": usage}
    try:
        move, expert = parse_move(reply.text, moves)
    except BriefError:  # the step still runs, bounded: the least-used move, the fallback expert
        move, expert = moves[0], p.domain.fallback_expert
        update["protocol_errors"] = state.protocol_errors + 1
    return {**update, "step": {"move": move, "expert": expert}}


async def evolve(state: InstructState, runtime: Runtime) -> dict:
    """The named expert, fresh eyes, rewrites the instruction with the move, and says what it
    added."""
    run = InstructRun.of(runtime)
    p, step = run.instruct, state.step
    text = p.render(
        "instruct/evolve.md",
        expert=step["expert"],
        domain=p.domain.name,
        document=state.source["text"],
        instruction=state.instruction,
        move=step["move"],
        move_description=p.moves[step["move"]],
    )
    reply, usage = await consult(run, step["expert"], text, p.texts["instruct/evolve.gbnf"])
    evolved = parse_evolved(reply.text)
    step = {
        **step,
        "instruction": evolved[0] if evolved else None,
        "added": evolved[1] if evolved else "",
    }
    return {"step": step, "usage": usage, "experts": state.experts + [step["expert"]]}


async def distinct(state: InstructState, runtime: Runtime) -> dict:
    """No model: a step whose instruction is a paraphrase of the previous version is rejected."""
    run, step = InstructRun.of(runtime), state.step
    if not step.get("instruction"):
        return _version(state, step, "no instruction", "no instruction in the reply")
    before, after = await asyncio.to_thread(
        run.embedder.encode, [state.instruction, step["instruction"]]
    )
    similarity = float(before @ after)
    step = {**step, "similarity": round(similarity, 4)}
    if similarity >= run.settings.paraphrase_threshold:
        return _version(
            state,
            step,
            "paraphrase",
            f"a paraphrase of the previous version (similarity {similarity:.3f} >= "
            f"{run.settings.paraphrase_threshold:.2f})",
        )
    if similarity < run.settings.drift_threshold:
        return _version(
            state,
            step,
            "drift",
            f"another instruction, not an evolution of the previous version (similarity "
            f"{similarity:.3f} < {run.settings.drift_threshold:.2f})",
        )
    if meta_text(step["instruction"]) and not meta_text(state.instruction):
        return _version(
            state,
            step,
            "meta-text",
            "talks about the task (instruction, rewrite, the document) instead of asking",
        )
    return {"step": step}


async def check(state: InstructState, runtime: Runtime) -> dict:
    """A fresh-eyes expert answers yes or no: can the evolved instruction be answered from the
    document?"""
    run = InstructRun.of(runtime)
    p, step = run.instruct, state.step
    text = p.render(
        "instruct/check.md",
        domain=p.domain.name,
        document=state.source["text"],
        instruction=step["instruction"],
    )
    reply, usage = await consult(run, "Checker", text, p.texts["instruct/check.gbnf"])
    answerable, reason = parse_check(reply.text)
    why = (
        (reason or "answerable")
        if answerable
        else f"not answerable from the document: {reason or 'no reason given'}"
    )
    return {
        **_version(state, step, "answerable" if answerable else "not answerable", why),
        "usage": usage,
        "experts": state.experts + ["Checker"],
    }


async def answer(state: InstructState, runtime: Runtime) -> dict:
    """The planned expert, fresh eyes, answers the final version from the document."""
    run = InstructRun.of(runtime)
    p, expert = run.instruct, state.plan["expert"]
    text = p.render(
        "instruct/answer.md",
        expert=expert,
        domain=p.domain.name,
        document=state.source["text"],
        instruction=state.instruction,
    )
    reply, usage = await consult(run, expert, text)
    response = parse_response(reply.text)
    update = {"response": response, "usage": usage, "experts": state.experts + [expert]}
    return (
        update if response else {**update, "verdict": {"accepted": False, "reason": "no response"}}
    )


async def gate(state: InstructState, runtime: Runtime) -> dict:
    """The novelty gate over instructions and the commit, atomic in Memory.admit."""
    run = InstructRun.of(runtime)
    vector = await embed(run, state.instruction)
    record = instruction_record(run, state, "final" if state.origin == "conductor" else "fallback")
    summary, committed = await admit(
        run.memory, record, vector, run.settings.threshold, shown="instruction"
    )
    if committed:
        return {"verdict": summary, "result": committed, "ended": committed["ended"]}
    return {"verdict": summary, "result": record}


def replan(state: InstructState, runtime: Runtime) -> dict:
    """An instruction too close to the set: the conductor plans again, told what it collided
    with."""
    run, verdict = InstructRun.of(runtime), state.verdict
    nearest = verdict["near_instruction"]
    note = too_similar(
        run.instruct, "instruct/too_similar.md", verdict, run.settings.threshold, nearest=nearest
    )
    return {
        "messages": [HumanMessage(note)],
        "revisions": state.revisions + 1,
        "plan": None,
        "instruction": None,
        "response": None,
        "evolution": [],
    }


async def reject(state: InstructState, runtime: Runtime) -> dict:
    """No instruction, no response, or too similar past the revision budget: rejects.jsonl, never
    the set."""
    run = InstructRun.of(runtime)
    verdict = state.verdict
    record = {
        **(state.result or instruction_record(run, state, "rejected")),
        "ended": "rejected",
        "reason": verdict.get("reason") or "too similar",
        "nearest_similarity": verdict.get("similarity"),
        "nearest_id": verdict.get("near_id"),
    }
    await asyncio.to_thread(run.memory.reject, record)
    return {"result": record, "ended": "rejected"}


# -- routing ---------------------------------------------------------------------------------------
def after_plan(state: InstructState, runtime: Runtime) -> str:
    run = InstructRun.of(runtime)
    spent = (
        state.protocol_errors >= run.settings.max_protocol_errors
        or state.round >= run.settings.max_rounds
    )
    return "derive" if state.plan else "fallback" if spent else "plan"


def _next_step(state: InstructState, runtime: Runtime) -> str:
    return (
        "propose"
        if len(state.evolution) - 1 < InstructRun.of(runtime).settings.evolve_rounds
        else "answer"
    )


def after_derive(state: InstructState, runtime: Runtime) -> str:
    return _next_step(state, runtime) if state.instruction else "reject"


def after_distinct(state: InstructState, runtime: Runtime) -> str:
    return "check" if state.step else _next_step(state, runtime)


def after_check(state: InstructState, runtime: Runtime) -> str:
    return _next_step(state, runtime)


def after_answer(state: InstructState, runtime: Runtime) -> str:
    return "gate" if state.response else "reject"


def after_gate(state: InstructState, runtime: Runtime) -> str:
    if state.verdict.get("accepted"):
        return END
    return (
        "replan" if state.revisions < InstructRun.of(runtime).settings.max_revisions else "reject"
    )
