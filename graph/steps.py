"""The steps every generation graph shares: one LLM call with its usage, an embedding off the event
loop, a writer's fresh-eyes conversation, the quality gate, the novelty gate with its commit, and
the record a document leaves in corpus.jsonl or rejects.jsonl. MetaSynth's documents
(graph/documents), the baselines (graph/baselines) and MetaSynth-Instruct (graph/instruct) import
them from here."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import datetime, timezone

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from agents.prompts import PromptSet
from graph.documents.state import Document, Draft
from graph.session import Run
from memory import quality


def least_covered(values: list[str], counts: Counter, k: int, rng: random.Random) -> list[str]:
    """The k values the corpus has least of; ties in a seeded random order (a stable sort of a
    shuffle)."""
    shuffled = list(values)
    rng.shuffle(shuffled)
    return sorted(shuffled, key=lambda v: counts[v])[:k]


async def ask(router, messages: list, role: str, grammar: str = "") -> tuple[AIMessage, list[dict]]:
    """One LLM call (retried, capped, accounted by the router) and its usage, the one entry the
    item's state appends."""
    start = time.perf_counter()
    reply = await router.call(messages, role, grammar)
    meta = reply.usage_metadata or {}
    return reply, [
        {
            "role": role,
            "calls": 1,
            "prompt_tokens": meta.get("input_tokens", 0),
            "completion_tokens": meta.get("output_tokens", 0),
            "seconds": round(time.perf_counter() - start, 3),
        }
    ]


async def embed(run: Run, text: str):
    """Embedding is CPU work: keep it off the event loop so other items' calls proceed."""
    return (await asyncio.to_thread(run.embedder.encode, [text]))[0]


def writer_messages(run: Run, text: str) -> list:
    """Fresh eyes: the expert system prompt and one instruction, nothing of the corpus or the
    conductor."""
    return [SystemMessage(run.prompts.render("expert.md")), HumanMessage(text)]


async def consult(
    run: Run, name: str, text: str, grammar: str = ""
) -> tuple[AIMessage, list[dict]]:
    """One expert, fresh eyes: the writer's router, the expert system prompt and `text`, nothing
    else; accounted as `expert:<name>`."""
    return await ask(run.writer, writer_messages(run, text), f"expert:{name}", grammar)


def too_similar(prompts, name: str, verdict: dict, threshold: float, **nearest: str) -> str:
    """The note a draft too close to the memory goes back with (prompt file `name`): how close it
    came, the limit, and what it collided with."""
    similarity = f"{verdict['similarity']:.3f}"
    return prompts.render(name, similarity=similarity, threshold=f"{threshold:.2f}", **nearest)


def with_fix(prompts: PromptSet, instruction: str, fix: str) -> str:
    """A writer's instruction, and the quality gate's note when its last draft was sent back (a
    blank note, as prompt files may make it: the instruction alone, a fresh sample)."""
    note = prompts.render("quality.md", problem=fix).strip() if fix else ""
    return f"{instruction}\n\n{note}" if note else instruction


def usage_by_kind(usage: list[dict]) -> dict:
    """This document's LLM calls, tokens and seconds summed per kind of role (conductor, expert,
    fallback, ...), the expert names folded in, so every record has the same few keys."""
    kinds: dict[str, dict] = {}
    for call in usage:
        slot = kinds.setdefault(call["role"].split(":")[0], {})
        for key, value in call.items():
            if key != "role":
                total = slot.get(key, 0) + value
                slot[key] = round(total, 3) if isinstance(total, float) else total
    return kinds


def make_record(
    run: Run, state: Document, ended: str, draft: dict | None = None, **outcome: object
) -> dict:
    """One line of corpus.jsonl (ended final / fallback) or rejects.jsonl (rejected, with `outcome`:
    why and the nearest document). Every method and outcome writes the same fields, so corpora and
    their rejects compare line for line."""
    draft = draft or {}
    text = draft.get("text", "")
    return {
        "domain": run.prompts.domain.name,
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
        "model": run.conductor.model,
        "expert_model": run.writer.model,
        "prompt_hash": run.prompts.hash,
        "source": state.source,
        "written_by": state.written_by or state.method,
        "writer": state.writer or None,
        "expert_share": getattr(state, "expert_share", None),
        "tokens": run.count_tokens(text) if text else 0,
        "usage": usage_by_kind(state.usage),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **outcome,
    }


async def admit(memory, record: dict, vector, threshold: float, shown: str):
    """The novelty gate and the commit, atomic in Memory.admit, off the event loop. Returns the
    verdict as the state keeps it (accepted, similarity, the nearest record's `shown` field and
    id) and the committed record, None when the draft was sent back."""
    verdict = await asyncio.to_thread(memory.admit, record, vector, threshold)
    nearest = verdict.nearest or {}
    summary = {
        "accepted": verdict.accepted,
        "similarity": verdict.similarity,
        f"near_{shown}": nearest.get(shown, ""),
        "near_id": nearest.get("id"),
    }
    return summary, verdict.record if verdict.accepted else None


async def inspect(run: Run, state: Document, text: str) -> tuple:
    """The draft's embedding (the novelty gate's) and its quality figures, off the event loop; the
    topic check compares that embedding with the seed keywords' (none for a real seed document),
    the talk check that of each sentence; the persona check the experts' names."""
    filled = [*state.seeds, state.genre, state.audience, *(state.brief or {}).values()]
    personas = [*state.experts, (state.brief or {}).get("expert", "")]
    return await asyncio.to_thread(
        quality.inspect, run.talk, text, state.seeds, state.instruction, filled, personas
    )


def refused_for_quality(verdict: dict) -> bool:
    """Whether the gate's last verdict was the quality gate's refusal (not the novelty gate's)."""
    return verdict.get("reason") == quality.REFUSED


def problem(prompts: PromptSet, checked: quality.Quality, keywords: list[str]) -> str:
    """What the quality gate found in a refused draft about `keywords`: the first rule it failed,
    from the prompt files (`{problem}` of the writer's note, quality.md, and of the text
    protocol's quality_conductor.md)."""
    return prompts.fragment(
        f"quality_{checked.rule}", words=checked.figures["words"], keywords=", ".join(keywords)
    )


async def judge(run: Run, state: Document, draft: Draft, ended: str, threshold: float) -> dict:
    """Every document graph's gate: the quality gate, then the novelty gate and the commit
    (`threshold`: math.inf for none). Returns the state update: the verdict, the record once
    committed; each refusal is added to `sent_back`, and a quality refusal leaves the writer its
    `fix`."""
    vector, checked = await inspect(run, state, draft["text"])
    if "category" in draft["guessed"]:
        draft = {**draft, "category": run.category_of(vector)}
    if run.settings.quality_gate == "on" and not checked.passed:
        refusal = {"reason": quality.REFUSED, "rule": checked.rule}
        return {
            "draft": draft,
            "verdict": {"accepted": False, **refusal, "quality": checked.as_record()},
            "sent_back": state.sent_back + [refusal],
            "fix": problem(run.prompts, checked, state.seeds),
        }
    record = make_record(run, state, ended, draft, quality=checked.as_record())
    verdict, committed = await admit(run.memory, record, vector, threshold, shown="summary")
    if committed:
        return {"draft": draft, "verdict": verdict, "result": committed, "ended": ended, "fix": ""}
    refusal = {"reason": "too similar", "similarity": round(verdict["similarity"], 4)}
    return {
        "draft": draft,
        "verdict": {**verdict, "quality": checked.as_record()},
        "sent_back": state.sent_back + [refusal],
        "fix": "",
    }


async def reject(state: Document, runtime) -> dict:
    """Past the revision budget (or with no usable document): record the draft in rejects.jsonl,
    never in the corpus. A node of every document graph."""
    run = Run.of(runtime)
    verdict = state.verdict
    record = make_record(
        run,
        state,
        "rejected",
        state.draft,
        reason=verdict.get("reason") or "too similar",
        rule=verdict.get("rule"),
        quality=verdict.get("quality"),
        nearest_similarity=verdict.get("similarity"),
        nearest_id=verdict.get("near_id"),
    )
    await asyncio.to_thread(run.memory.reject, record)
    return {"result": record, "ended": "rejected"}
