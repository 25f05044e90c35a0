"""State of one document's run through the graph."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages


def merge_usage(old: dict | None, new: dict | None) -> dict:
    """Sum per-role call and token counters: {"conductor": {"calls": 1, "prompt_tokens": .., ...}}."""
    merged = {role: dict(counts) for role, counts in (old or {}).items()}
    for role, counts in (new or {}).items():
        slot = merged.setdefault(role, {})
        for key, value in counts.items():
            total = slot.get(key, 0) + value
            slot[key] = round(total, 3) if isinstance(total, float) else total
    return merged


def collect_replies(old: list | None, new: list | None) -> list:
    """Parallel expert branches append their replies; `None` clears the list once relayed."""
    return [] if new is None else (old or []) + new


class DocInput(TypedDict, total=False):
    index: int  # position of the document in the run (drives the seed)
    seeds: list[str]  # give keywords directly instead of sampling them
    seed_doc: str  # or a real document to derive them from


class ExpertTask(TypedDict):
    """What one expert branch receives (via Send): its instruction and nothing of the conversation."""

    order: int
    name: str
    instruction: str


class DocState(TypedDict, total=False):
    index: int
    seeds: list[str]
    seed_doc: str
    genre: str
    audience: str
    messages: Annotated[list[AnyMessage], add_messages]  # the conductor's conversation only
    round: int  # conductor turns taken
    protocol_errors: int
    protocol_notes: list[str]  # why turns failed or were trimmed (agents.protocol.Turn error and notes)
    revisions: int
    experts: list[str]  # names consulted, in order
    calls: list[dict]  # expert calls of the latest conductor turn
    replies: Annotated[list[dict], collect_replies]
    draft: dict | None  # the latest final answer {text, summary, category, guessed}
    source: str  # "conductor" or "fallback": who wrote the draft
    fallback_reason: str
    verdict: dict  # novelty-gate outcome of the latest draft
    protocol: str  # "text" or "structured"
    # The structured protocol (graph/structured.py)
    options: dict[str, list[str]]  # what the memory offers this document: category, genre, audience
    brief: dict | None  # the conductor's latest usable brief (agents.brief.Brief fields)
    instruction: str  # the writer's instruction, rendered from the brief
    reviews: list[dict]  # each review: {verdict, fix}
    result: dict  # the committed or rejected record
    ended: str  # "final" | "fallback" | "rejected"
    usage: Annotated[dict[str, Any], merge_usage]


class TemplateState(TypedDict, total=False):
    """A baseline document (graph/baselines.py): one prompt, one reply."""

    index: int
    seeds: list[str]
    method: str  # "template" | "template-prior" | "template-icl"
    shown: list[str]  # documents put in the prompt: recent corpus documents or real examples
    messages: Annotated[list[AnyMessage], add_messages]
    draft: dict | None
    result: dict
    ended: str  # "final" | "rejected"
    usage: Annotated[dict[str, Any], merge_usage]
