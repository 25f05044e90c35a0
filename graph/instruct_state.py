"""Settings and state of one instruction's run through the MetaSynth-Instruct graph
(graph/instruct_graph.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict  # pydantic (Studio's schemas) needs it on Python < 3.12

from graph.configuration import LOOP, Shared, setting
from graph.state import merge_usage
from memory.store import DEFAULT_THRESHOLD

# An evolution step whose instruction is this similar to the previous version is a paraphrase, not
# an evolution (all-MiniLM-L6-v2 cosine; docs/instruct.md has the measured similarities of kept
# steps).
DEFAULT_PARAPHRASE_THRESHOLD = 0.97
# One this far from the previous version is another instruction, not an evolution of it.
DEFAULT_DRIFT_THRESHOLD = 0.5


# Studio shows the docstring as the settings' description: the backslashes keep its two lines.
@dataclass(kw_only=True)
class InstructContext(Shared):
    """The settings every generation graph shares (servers, models, gate threshold, grammars, \
seed ...) plus these.
    `out_dir` is the instruction run's directory; `threshold` gates instructions against \
instructions."""

    corpus: str = setting(
        "",
        "Source run directory (its corpus.jsonl) or a corpus JSONL file the instructions are "
        "derived from.",
    )
    evolve_rounds: int = setting(
        2, "Evolution steps per instruction (each accepted or rejected).", group=LOOP
    )
    paraphrase_threshold: float = setting(
        DEFAULT_PARAPHRASE_THRESHOLD,
        "Evolution steps at least this similar to the previous version are rejected as "
        "paraphrases.",
        group=LOOP,
        positive=True,
    )
    drift_threshold: float = setting(
        DEFAULT_DRIFT_THRESHOLD,
        "Evolution steps less similar than this to the previous version are rejected as drift.",
        group=LOOP,
    )
    document_chars: int = setting(
        3000,
        "Characters of the source document shown to the conductor and the experts.",
        group=LOOP,
        positive=True,
    )
    # The document graph's settings that mean something else here.
    max_tokens: int = setting(
        256,
        "Completion token limit per conductor turn (a plan or a move is short).",
        group=LOOP,
        positive=True,
    )
    threshold: float = setting(
        DEFAULT_THRESHOLD,
        "Novelty gate over instructions: cosine similarity to the nearest committed "
        "instruction at or above which one is sent back.",
        group=LOOP,
        positive=True,
    )
    choices: int = setting(
        4, "Least-covered instruction types offered to the conductor.", group=LOOP, positive=True
    )
    recall_k: int = setting(5, "Nearest committed instructions shown to the conductor.", group=LOOP)
    max_revisions: int = setting(
        2, "Too-similar replans before an instruction goes to rejects.jsonl.", group=LOOP
    )
    max_protocol_errors: int = setting(
        3, "Unusable plans before the fallback.", group=LOOP, positive=True
    )


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
    usage: Annotated[dict[str, Any], merge_usage] = field(default_factory=dict)
