"""MetaSynth-Instruct's prompts, replies and complexity measure (graph/instruct/graph.py runs them).

Every turn is a few short fields, one per line, bounded by a grammar (prompts/instruct/*.gbnf), as
the structured protocol's brief is (agents/protocol.py, whose line reader and persona rule this
reuses): a small model cannot keep a free-text protocol. Without a grammar the parsers are the
check, and what they refuse is a protocol error (a plan) or a rejected step (an evolution).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from agents.grammar import check as check_grammar
from agents.prompts import PromptSet, fill, load_prompts, read_prompt, render_grammar
from agents.protocol import PERSONA, BriefError, pick_option, reply_fields
from core.errors import UserError

# file name -> placeholders it must contain
REQUIRED: dict[str, set[str]] = {
    "instruct/conductor.md": set(),
    "instruct/task.md": {"document", "types"},
    "instruct/plan_error.md": {"error"},
    "instruct/derive.md": {"document", "type", "focus"},
    "instruct/step.md": {"instruction", "moves"},
    "instruct/evolve.md": {"document", "instruction", "move_description"},
    "instruct/check.md": {"document", "instruction"},
    "instruct/answer.md": {"document", "instruction"},
    "instruct/too_similar.md": {"nearest"},
}
# grammar file -> rules filled in per request
GRAMMARS: dict[str, set[str]] = {
    "instruct/plan.gbnf": {"type"},
    "instruct/move.gbnf": {"move"},
    "instruct/derive.gbnf": set(),
    "instruct/evolve.gbnf": set(),
    "instruct/check.gbnf": set(),
}
VOCABULARY = "instruct/types.yaml"
MIN_INSTRUCTION_CHARS = 15
MIN_RESPONSE_CHARS = 20


@dataclass(frozen=True)
class InstructPrompts:
    """The document prompts (for the domain and the expert system prompt), the instruction prompts,
    the instruction types and evolution moves (name -> description), and one hash over all of
    them."""

    base: PromptSet
    texts: dict[str, str]
    types: dict[str, str]
    moves: dict[str, str]
    hash: str

    @property
    def domain(self):
        return self.base.domain

    def render(self, name: str, **values: object) -> str:
        return fill(self.texts[name], **values)

    def grammar(self, name: str, rules: dict[str, list[str]]) -> str:
        """A grammar file with its per-request `rules` added (as PromptSet.grammar)."""
        return render_grammar(self.texts[name], rules)


def _vocabulary(path: Path, text: str, key: str) -> dict[str, str]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({getattr(e, 'problem', e)})") from None
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, dict) or not value:
        raise UserError(f"{path}: '{key}' must be a non-empty mapping of name: description")
    return {str(k).strip(): str(v).strip() for k, v in value.items()}


def load_instruct_prompts(domain: str, override: str | Path | None = None) -> InstructPrompts:
    """Read and check every instruction prompt and grammar (override folder first), like
    load_prompts."""
    base = load_prompts(domain, override)
    folder = Path(override) if override else None
    texts, digest = {}, hashlib.sha256(base.hash.encode())
    for name in (*REQUIRED, *GRAMMARS, VOCABULARY):
        path, texts[name] = read_prompt(name, folder)
        if name in GRAMMARS:
            check_grammar(texts[name], str(path), GRAMMARS[name])
        missing = sorted(n for n in REQUIRED.get(name, ()) if "{" + n + "}" not in texts[name])
        if missing:
            raise UserError(
                f"prompt {name} is missing placeholder(s): "
                f"{', '.join('{' + m + '}' for m in missing)}"
            )
        digest.update(f"{name}\0{texts[name]}\0".encode())
    path = read_prompt(VOCABULARY, folder)[0]
    return InstructPrompts(
        base=base,
        texts=texts,
        types=_vocabulary(path, texts[VOCABULARY], "types"),
        moves=_vocabulary(path, texts[VOCABULARY], "moves"),
        hash=digest.hexdigest()[:16],
    )


# -- replies ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    type: str
    focus: str
    expert: str

    def as_dict(self) -> dict:
        return asdict(self)


def _persona(value: str) -> str:
    expert = " ".join(value.split())
    if not PERSONA.fullmatch(expert):
        raise BriefError(f"Expert {expert!r} is not a job title of capitalised words")
    return expert


def parse_plan(reply: str, types: list[str]) -> Plan:
    """The conductor's plan; `types` are the types offered for this instruction."""
    found = reply_fields(reply)
    missing = [k for k in ("type", "focus", "expert") if not found.get(k)]
    if missing:
        raise BriefError(f"missing line(s): {', '.join(k.capitalize() + ':' for k in missing)}")
    if len(found["focus"]) < 8:
        raise BriefError("the focus is too short to write from")
    return Plan(
        type=pick_option(found["type"], types, "type"),
        focus=found["focus"][:200],
        expert=_persona(found["expert"]),
    )


def parse_move(reply: str, moves: list[str]) -> tuple[str, str]:
    """(move, expert) of the conductor's evolution turn."""
    found = reply_fields(reply)
    if not found.get("move") or not found.get("expert"):
        raise BriefError("missing Move: or Expert: line")
    return pick_option(found["move"], moves, "move"), _persona(found["expert"])


def parse_instruction(reply: str) -> str | None:
    """The instruction of a derivation reply; None when there is no usable one."""
    text = reply_fields(reply).get("instruction") or ""
    return text if len(text) >= MIN_INSTRUCTION_CHARS else None


def parse_evolved(reply: str) -> tuple[str, str] | None:
    """(instruction, what the step added) of an evolution reply; None when there is no
    instruction."""
    instruction = parse_instruction(reply)
    return (instruction, reply_fields(reply).get("added", "")) if instruction else None


def parse_check(reply: str) -> tuple[bool, str]:
    """(answerable, reason). Unlike a review, an unclear answer is a no: a step must earn its
    place."""
    found = reply_fields(reply)
    return found.get("answerable", "").lower().startswith("yes"), found.get("reason", "")


# Words of the task itself: an instruction that uses them talks about the task instead of asking
# something (Evol-Instruct's elimination step drops rewrites that copy "given prompt", "rewritten
# prompt" likewise).
_META = re.compile(
    r"\b(?:instructions?|rewrit\w*|the (?:document|text|passage|article))\b", re.IGNORECASE
)


def meta_text(instruction: str) -> bool:
    return bool(_META.search(instruction))


def parse_response(reply: str) -> str | None:
    text = reply.strip()
    return text if len(text) >= MIN_RESPONSE_CHARS else None


def as_chat(record: dict) -> dict:
    """An instruction record as fine-tuning tools read it: `messages` first, the metadata after
    (`text`, the copy of the instruction the novelty memory embeds, is left out)."""
    messages = [
        {"role": "user", "content": record["instruction"]},
        {"role": "assistant", "content": record["response"]},
    ]
    return {"messages": messages, **{k: v for k, v in record.items() if k != "text"}}


# -- complexity ------------------------------------------------------------------------------------
# An instruction's complexity, by counting what Evol-Instruct's in-depth moves add
# (docs/instruct.md): parts (separate things asked for), constraints (limits on the answer's form or
# content) and reasoning demands (explain, justify, compare ...). Surface cues, not semantics: a
# measure to compare versions of one instruction and sets of them, not a grade.
_ASK = re.compile(
    r"^(?:(?:then|and|also|finally|next|first|second|third)[, ]+)?(?:\(?\w\)|\d+[.)])?\s*"
    r"(?:explain|describe|compare|list|identify|calculate|compute|estimate|summari[sz]e|outline|discuss|"
    r"evaluate|assess|analy[sz]e|write|rewrite|propose|recommend|justify|name|state|give|provide|"
    r"suggest|determine|show|cite|quote|what|why|how|which|who|when|where)\b",
    re.IGNORECASE,
)
_ENUMERATED = re.compile(r"(?:^|\s)(?:\(?[a-e1-5]\)|[1-5]\.)\s")
_CONSTRAINT = re.compile(
    r"\b(?:at least|at most|no more than|no fewer than|exactly|within|in under|only|must|without|"
    r"do not|don't|avoid|include|including|using|based on|in a table|bullet|format|limit(?:ed)? to|"
    r"\d+\s+(?:words|sentences|points|bullets|steps|examples|paragraphs|items|reasons))\b",
    re.IGNORECASE,
)
_REASONING = re.compile(
    r"\b(?:why|explain|justify|reason(?:ing)?|step[- ]by[- ]step|compare|contrast|trade-?offs?|"
    r"implications?|assess|evaluate|consequences?|because)\b",
    re.IGNORECASE,
)


def complexity(instruction: str, steps: int = 0) -> dict:
    """{steps, parts, constraints, reasoning, words, score}: score = parts + constraints +
    reasoning."""
    clauses = [c.strip() for c in re.split(r"(?<=[.?!;:])\s+", instruction) if c.strip()]
    asks = sum(1 for c in clauses if c.endswith("?") or _ASK.match(c))
    parts = max(1, asks, len(_ENUMERATED.findall(instruction)))
    constraints = len(_CONSTRAINT.findall(instruction))
    reasoning = len(_REASONING.findall(instruction))
    return {
        "steps": steps,
        "parts": parts,
        "constraints": constraints,
        "reasoning": reasoning,
        "words": len(instruction.split()),
        "score": parts + constraints + reasoning,
    }
