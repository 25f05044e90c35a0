"""State of one document's run through the graph: dataclasses with defaults, so a node reads
`state.round`, never `state.get("round", 0)`. Nodes return dicts of the fields they change."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Annotated

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict  # pydantic (Studio's schemas) needs it on Python < 3.12

from agents.protocol import FinalAnswer


def collect_replies(old: list | None, new: list | None) -> list:
    """Parallel expert branches append their replies; `None` clears the list once relayed."""
    return [] if new is None else (old or []) + new


class Draft(TypedDict):
    """A document the gate may commit: its text and what the memory files it under."""

    text: str
    summary: str
    category: str
    # fields the writer did not give and the graph filled in ("summary", "category", ...)
    guessed: list[str]


def draft_of(final: FinalAnswer | None) -> Draft | None:
    return final and Draft(
        text=final.text, summary=final.summary, category=final.category, guessed=list(final.guessed)
    )


class DocInput(TypedDict, total=False):
    index: int  # position of the document in the run (drives the seed)
    seeds: list[str]  # give keywords directly instead of sampling them
    seed_doc: str  # or a real document to derive them from


class ExpertTask(TypedDict):
    """What one expert branch receives (via Send): its instruction and nothing of the
    conversation."""

    order: int
    name: str
    instruction: str


@dataclass(kw_only=True)
class Document:
    """What every method's document carries, and what its record reports
    (graph.steps.make_record)."""

    index: int = 0
    method: str = "metasynth"  # or a baseline: "template" | "template-prior" | "template-icl"
    seeds: list[str] = field(default_factory=list)
    seed_doc: str = ""
    genre: str = ""
    audience: str = ""
    # the conductor's, or the writer's
    messages: Annotated[list[AnyMessage], add_messages] = field(default_factory=list)
    round: int = 0  # conductor turns taken (a baseline's one call counts as one)
    protocol: str | None = None  # "text" or "structured"; None for the baselines
    protocol_errors: int = 0
    protocol_notes: list[str] = field(default_factory=list)  # why turns failed or were trimmed
    revisions: int = 0
    experts: list[str] = field(default_factory=list)  # names consulted, in order
    brief: dict | None = None  # the conductor's latest usable brief (agents.protocol.Brief fields)
    reviews: list[dict] = field(default_factory=list)  # each review: {verdict, fix}
    draft: Draft | None = None
    # what the draft's writer was asked (the quality gate looks for echoes of it)
    instruction: str = ""
    # what the quality gate found in the last draft, for the writer's note ("" = nothing to say:
    # not refused for quality, or its rule's fragment is blank; routing reads the verdict)
    fix: str = ""
    # each refusal by the gates: reason, rule, similarity
    sent_back: list[dict] = field(default_factory=list)
    source: str | None = None  # "conductor" or "fallback": who wrote the draft
    # "experts" (the protocol ran), "conductor" (alone, where allowed), "fallback", or the method
    written_by: str = ""
    writer: str = ""  # the expert who wrote most of the document's text
    fallback_reason: str = ""
    verdict: dict = field(default_factory=dict)  # the gates' outcome of the latest draft
    result: dict = field(default_factory=dict)  # the committed or rejected record
    ended: str = ""  # "final" | "fallback" | "rejected"
    # one entry per LLM call (role, calls, tokens, seconds); the record sums them by kind
    usage: Annotated[list[dict], operator.add] = field(default_factory=list)


@dataclass(kw_only=True)
class DocState(Document):
    """A MetaSynth document, either protocol (graph.py)."""

    calls: list[dict] = field(default_factory=list)  # expert calls of the latest conductor turn
    replies: Annotated[list[dict], collect_replies] = field(default_factory=list)
    # every expert reply relayed so far: name, text
    expert_replies: list[dict] = field(default_factory=list)
    expert_share: float | None = None  # share of the final text the experts wrote (text protocol)
    premature: bool = False  # the latest turn was a final answer the experts did not write
    # The structured protocol (structured.py)
    # what the memory offers: category, genre, audience
    options: dict[str, list[str]] = field(default_factory=dict)
