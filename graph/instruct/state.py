"""State of one instruction's run through the MetaSynth-Instruct graph (graph.py; its settings:
graph/settings.py, InstructSettings)."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Annotated

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict  # pydantic (Studio's schemas) needs it on Python < 3.12


class InstructInput(TypedDict, total=False):
    index: int  # position of the instruction in the run (picks the source document)


@dataclass(kw_only=True)
class InstructState:
    index: int = 0
    source: dict = field(default_factory=dict)  # the source document: {id, text, category, summary}
    # instruction types offered (least covered first)
    types: list[str] = field(default_factory=list)
    # the conductor's conversation only
    messages: Annotated[list[AnyMessage], add_messages] = field(default_factory=list)
    round: int = 0  # conductor turns taken
    protocol_errors: int = 0
    revisions: int = 0  # times the gate sent an instruction back
    origin: str = "conductor"  # or "fallback": who planned it
    plan: dict | None = None  # {type, focus, expert}
    instruction: str | None = None  # the current (last accepted) version
    # every version, accepted or rejected, with what it added and why
    evolution: list[dict] = field(default_factory=list)
    step: dict | None = None  # the evolution step in progress: {move, expert, instruction, added}
    response: str | None = None
    experts: list[str] = field(default_factory=list)  # names consulted, in order
    verdict: dict = field(default_factory=dict)  # novelty-gate outcome
    result: dict = field(default_factory=dict)  # the committed or rejected record
    ended: str = ""  # "final" | "fallback" | "rejected"
    usage: Annotated[list[dict], operator.add] = field(default_factory=list)  # one per call
