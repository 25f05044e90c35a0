"""The nodes of the document graph. Each is one small step; routing lives in graph.py."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime, timezone

import openai
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from agents.grammar import starting_at
from agents.protocol import expert_share, parse_final, parse_turn
from agents.tokens import count_tokens
from graph import resources as res
from graph.configuration import Context
from graph.seeds import sample_seeds
from graph.state import DocState, Document, Draft, draft_of, merge_usage
from memory import quality
from memory.embedder import default_embedder

SEED_DOC_CHARS = 2000  # how much of a real seed document the conductor sees


# -- helpers ---------------------------------------------------------------------------------------
async def ask(router, messages: list, role: str, grammar: str = "") -> tuple[AIMessage, dict]:
    """One LLM call (retried, capped, accounted by the router) and its usage for the document's
    state."""
    start = time.perf_counter()
    reply = await router.call(messages, role, grammar)
    meta = reply.usage_metadata or {}
    return reply, {
        role: {
            "calls": 1,
            "prompt_tokens": meta.get("input_tokens", 0),
            "completion_tokens": meta.get("output_tokens", 0),
            "seconds": round(time.perf_counter() - start, 3),
        }
    }


async def embed(text: str):
    """Embedding is CPU work: keep it off the event loop so other documents' calls proceed."""
    return (await asyncio.to_thread(default_embedder().encode, [text]))[0]


def _round_message(ctx: Context, taken: int, body: str) -> HumanMessage:
    """A user turn, prefixed with the round the conductor is about to take (`taken` + 1); the last
    one says so."""
    prompts, k = res.prompts(ctx), taken + 1
    if k >= ctx.max_rounds:
        body = f"{body}\n\n{prompts.render('last_round.md')}"
    return HumanMessage(prompts.fragment("round", round=k, body=body))


def _seed_text(ctx: Context, state: DocState) -> str:
    prompts = res.prompts(ctx)
    if state.seed_doc:
        return prompts.fragment("seed_document", document=state.seed_doc[:SEED_DOC_CHARS])
    text = prompts.fragment("seed_keywords", keywords=", ".join(state.seeds))
    if state.genre:
        text += prompts.fragment("seed_genre", genre=state.genre)
    if state.audience:
        text += prompts.fragment("seed_audience", audience=state.audience)
    return text


def _expert_messages(ctx: Context, name: str, instruction: str) -> list:
    """Fresh eyes: an expert sees its system prompt, its name and one instruction, nothing else."""
    prompts = res.prompts(ctx)
    return [
        SystemMessage(prompts.render("expert.md")),
        HumanMessage(prompts.fragment("expert_turn", name=name, instruction=instruction)),
    ]


def make_record(
    ctx: Context, state: Document, ended: str, draft: dict | None = None, **outcome: object
) -> dict:
    """One line of corpus.jsonl (ended final / fallback) or rejects.jsonl (rejected, with `outcome`:
    why and the nearest document). Every method and outcome writes the same fields, so corpora and
    their rejects compare line for line."""
    prompts = res.prompts(ctx)
    draft = draft or {}
    text = draft.get("text", "")
    return {
        "domain": prompts.domain.name,
        "method": state.method,
        "text": text,
        "seeds": state.seeds,
        "seed_doc": state.seed_doc[:200] or None,
        "genre": state.genre,
        "audience": state.audience,
        "summary": draft.get("summary", ""),
        "category": draft.get("category", ""),
        "experts": state.experts,
        "rounds": state.round,
        "revisions": state.revisions,
        "protocol_errors": state.protocol_errors,
        "protocol_notes": state.protocol_notes,
        "sent_back": state.sent_back,
        "guessed": draft.get("guessed", []),
        "ended": ended,
        "fallback_reason": state.fallback_reason or None,
        "protocol": state.protocol,
        "brief": state.brief,
        "reviews": state.reviews,
        "model": res.conductor_router(ctx).model,
        "expert_model": res.expert_router(ctx).model,
        "prompt_hash": prompts.hash,
        "source": state.source,
        "written_by": state.written_by or state.method,
        "writer": state.writer or None,
        "expert_share": getattr(state, "expert_share", None),
        "tokens": count_tokens(text, ctx.tokenizer) if text else 0,
        "usage": usage_by_kind(state.usage),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **outcome,
    }


def usage_by_kind(usage: dict | None) -> dict:
    """This document's LLM calls, tokens and seconds per kind of role (conductor, expert, fallback,
    ...), the expert names folded in, so every record has the same few keys."""
    kinds: dict[str, dict] = {}
    for role, counts in (usage or {}).items():
        kinds = merge_usage(kinds, {role.split(":")[0]: counts})
    return kinds


async def admit(
    memory, record: dict, vector, threshold: float, shown: str
) -> tuple[dict, dict | None]:
    """The novelty gate and the commit, atomic in Memory.admit, off the event loop (both graphs'
    gate). Returns the verdict as the state keeps it (accepted, similarity, the nearest record's
    `shown` field and id) and the committed record, None when the draft was sent back."""
    verdict = await asyncio.to_thread(memory.admit, record, vector, threshold)
    nearest = verdict.nearest or {}
    summary = {
        "accepted": verdict.accepted,
        "similarity": verdict.similarity,
        f"near_{shown}": nearest.get(shown, ""),
        "near_id": nearest.get("id"),
    }
    return summary, verdict.record if verdict.accepted else None


def with_fix(ctx: Context, instruction: str, fix: str) -> str:
    """A writer's instruction, and the quality gate's note when its last draft was sent back."""
    return (
        f"{instruction}\n\n{res.prompts(ctx).render('quality.md', problem=fix)}"
        if fix
        else instruction
    )


def _problem(ctx: Context, state: Document, checked: quality.Quality) -> str:
    """What the writer is told about a refused draft: the first rule it failed, from the prompt
    files."""
    return res.prompts(ctx).fragment(
        f"quality_{checked.rule}", words=checked.figures["words"], keywords=", ".join(state.seeds)
    )


async def inspect(state: Document, text: str) -> tuple:
    """The draft's embedding (the novelty gate's) and its quality figures, off the event loop; the
    topic check compares that embedding with the seed keywords' (none for a real seed document)."""
    subject = quality.subject(state.seeds) if state.seeds else ""
    filled = [*state.seeds, state.genre, state.audience, *(state.brief or {}).values()]

    def work():
        vectors = default_embedder().encode([text, subject] if subject else [text])
        topic = quality.topic_similarity(vectors[0], vectors[1]) if subject else None
        return vectors[0], quality.check(text, state.instruction, topic, filled)

    return await asyncio.to_thread(work)


async def judge(ctx: Context, state: Document, draft: Draft, ended: str, threshold: float) -> dict:
    """Both graphs' gate: the quality gate, then the novelty gate and the commit (`threshold`:
    math.inf for none). Returns the state update: the verdict, the record once committed; each
    refusal is added to `sent_back`, and a quality refusal leaves the writer its `fix`."""
    vector, checked = await inspect(state, draft["text"])
    if "category" in draft["guessed"]:
        draft = {**draft, "category": res.category_of(ctx, vector)}
    if ctx.quality_gate == "on" and not checked.passed:
        refusal = {"reason": "low quality", "rule": checked.rule}
        return {
            "draft": draft,
            "verdict": {"accepted": False, **refusal, "quality": checked.as_record()},
            "sent_back": state.sent_back + [refusal],
            "fix": _problem(ctx, state, checked),
        }
    record = make_record(ctx, state, ended, draft, quality=checked.as_record())
    verdict, committed = await admit(res.memory(ctx), record, vector, threshold, shown="summary")
    if committed:
        return {"draft": draft, "verdict": verdict, "result": committed, "ended": ended, "fix": ""}
    refusal = {"reason": "too similar", "similarity": round(verdict["similarity"], 4)}
    return {
        "draft": draft,
        "verdict": {**verdict, "quality": checked.as_record()},
        "sent_back": state.sent_back + [refusal],
        "fix": "",
    }


async def recall_nearest(ctx: Context, state: DocState) -> list[tuple[float, dict]]:
    query = state.seed_doc or " ".join(state.seeds)
    return await asyncio.to_thread(res.memory(ctx).nearest, await embed(query), ctx.recall_k)


# -- nodes -----------------------------------------------------------------------------------------
async def seed(state: DocState, runtime: Runtime[Context]) -> dict:
    """Sample the keywords (or take the next real seed document) this document is conditioned on."""
    ctx = runtime.context
    await res.ready(ctx)  # loads and connects what the run needs, off the event loop
    if state.seeds or state.seed_doc:
        return {}
    picker = res.seed_picker(ctx)
    if picker:
        return {"seed_doc": await asyncio.to_thread(picker.next)}
    rng = random.Random(f"{ctx.seed}:{state.index}")
    return sample_seeds(res.prompts(ctx).domain, ctx.keywords, rng)


async def recall(state: DocState, runtime: Runtime[Context]) -> dict:
    """Open the conductor's conversation: its system prompt, the seed and what the corpus already
    holds."""
    ctx = runtime.context
    prompts, memory = res.prompts(ctx), res.memory(ctx)
    near = await recall_nearest(ctx, state)
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
        seeds=_seed_text(ctx, state),
        corpus_size=size,
        categories=prompts.lines("category_line", counts),
        recall=prompts.lines("recall_line", recalled, empty="first_document"),
    )
    system = prompts.render(
        "conductor.md", domain=prompts.domain.name, description=prompts.domain.description
    )
    return {
        "messages": [SystemMessage(system), _round_message(ctx, 0, task)],
        "round": 0,
        "protocol": "text",
        "protocol_errors": 0,
        "revisions": 0,
        "experts": [],
        "source": "conductor",
        "instruction": task,
    }


async def conductor(state: DocState, runtime: Runtime[Context]) -> dict:
    """One conductor turn: consult experts, finish, or break the protocol. A final answer counts
    only when its experts wrote it (ctx.min_expert_share of its text from their replies); one they
    did not is a protocol error that tells the conductor so."""
    ctx = runtime.context
    rules = res.prompts(ctx).texts["conductor.gbnf"]
    if ctx.min_expert_share > 0 and not state.expert_replies:
        # No expert has written anything yet, so no final answer could be accepted: where the
        # server takes grammars, this turn can only consult (the grammar's `calls` rule).
        rules = starting_at(rules, "calls")
    try:
        reply, usage = await ask(res.conductor_router(ctx), state.messages, "conductor", rules)
    except openai.BadRequestError as e:  # typically the conversation outgrew the model's context
        return {
            "calls": [],
            "draft": None,
            "fallback_reason": f"conductor request refused: {e.code or e.status_code}",
        }
    turn = parse_turn(reply.text, ctx.max_experts_per_turn)
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
        if share >= ctx.min_expert_share:
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


async def expert(call: dict, runtime: Runtime[Context]) -> dict:
    """A fresh conversation: the expert sees its system prompt and the conductor's instruction,
    nothing else."""
    ctx = runtime.context
    messages = _expert_messages(ctx, call["name"], call["instruction"])
    reply, usage = await ask(res.expert_router(ctx), messages, f"expert:{call['name']}")
    return {
        "replies": [{"order": call["order"], "name": call["name"], "text": reply.text.strip()}],
        "usage": usage,
    }


def relay(state: DocState, runtime: Runtime[Context]) -> dict:
    """Hand the experts' outputs back to the conductor in one user turn, in the order it called
    them."""
    replies = sorted(state.replies, key=lambda r: r["order"])
    body = res.prompts(runtime.context).lines("expert_output", replies, empty=None, sep="\n\n")
    return {
        "messages": [_round_message(runtime.context, state.round, body)],
        "replies": None,
        "experts": state.experts + [r["name"] for r in replies],
        "expert_replies": state.expert_replies
        + [{"name": r["name"], "text": r["text"]} for r in replies],
    }


def protocol_error(state: DocState, runtime: Runtime[Context]) -> dict:
    """Tell the conductor what was wrong with its turn: the format, or a final answer its experts
    did not write."""
    ctx = runtime.context
    prompts = res.prompts(ctx)
    if state.premature:
        body = prompts.render(
            "final_needs_experts.md",
            share=f"{state.expert_share:.0%}",
            required=f"{ctx.min_expert_share:.0%}",
        )
    else:
        body = prompts.render("protocol_error.md")
    return {"messages": [_round_message(ctx, state.round, body)]}


async def fallback(state: DocState, runtime: Runtime[Context]) -> dict:
    """The documented way out for a conductor that cannot keep the protocol: one expert writes the
    document."""
    ctx = runtime.context
    prompts = res.prompts(ctx)
    name = prompts.domain.fallback_expert
    # Fresh eyes, as for every expert: no prior documents (a small model copies what it is shown).
    instruction = prompts.render(
        "fallback.md",
        domain=prompts.domain.name,
        description=prompts.domain.description,
        seeds=_seed_text(ctx, state),
    )
    asked = with_fix(ctx, instruction, state.fix if state.source == "fallback" else "")
    reply, usage = await ask(
        res.expert_router(ctx), _expert_messages(ctx, name, asked), f"fallback:{name}"
    )
    reason = state.fallback_reason or (
        "protocol errors" if state.protocol_errors >= ctx.max_protocol_errors else "round cap"
    )
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


async def gate(state: DocState, runtime: Runtime[Context]) -> dict:
    """The quality gate, then the novelty gate and the commit (atomic in Memory.admit)."""
    if not state.draft:
        return {"verdict": {"accepted": False, "reason": "no document"}}
    ended = "final" if state.source == "conductor" else "fallback"
    return await judge(runtime.context, state, state.draft, ended, runtime.context.threshold)


def revise(state: DocState, runtime: Runtime[Context]) -> dict:
    """Send a refused draft back: to the conductor (what the quality gate found, or what it was too
    close to), or to the fallback writer if it wrote it (which reads `fix` itself)."""
    ctx = runtime.context
    verdict = state.verdict
    update = {"revisions": state.revisions + 1}
    if state.source == "conductor" and state.round < ctx.max_rounds:
        prompts = res.prompts(ctx)
        if state.fix:
            body = prompts.render("quality_conductor.md", problem=state.fix)
        else:
            body = prompts.render(
                "too_similar.md",
                similarity=f"{verdict['similarity']:.3f}",
                threshold=f"{ctx.threshold:.2f}",
                summary=verdict["near_summary"],
            )
        update["messages"] = [_round_message(ctx, state.round, body)]
    return update


async def reject(state: DocState, runtime: Runtime[Context]) -> dict:
    """Past the revision budget (or with no usable document): record the draft, never in the
    corpus."""
    ctx = runtime.context
    verdict = state.verdict
    record = make_record(
        ctx,
        state,
        "rejected",
        state.draft,
        reason=verdict.get("reason") or "too similar",
        rule=verdict.get("rule"),
        quality=verdict.get("quality"),
        nearest_similarity=verdict.get("similarity"),
        nearest_id=verdict.get("near_id"),
    )
    await asyncio.to_thread(res.memory(ctx).reject, record)
    return {"result": record, "ended": "rejected"}
