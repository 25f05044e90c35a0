"""What the conductor's and the experts' replies look like, and their parsers: one module for both
conductor protocols.

The free-text protocol of the paper (prompts/conductor.md): expert calls or a final answer.

    Expert <Name>:
    \"\"\"
    <instruction>
    \"\"\"

    >> FINAL ANSWER:
    \"\"\"
    <document>
    \"\"\"
    Summary: <one sentence>
    Category: <label>

Small models bend this format, so the parser accepts common variants (missing closing quotes,
``` fences, bold markers, a missing Summary/Category line) and records what it had to guess.

The structured protocol (graph/documents/structured.py): a small model cannot keep the free-text
one, so the conductor's brief and the reviewer's verdict are short fields, one per line, bounded
by a grammar (prompts/brief.gbnf, prompts/review.gbnf). With the grammar the reply always has this
shape; without one (a server that takes no grammar, `--constrain off`) the parser is the check,
and what it refuses is a protocol error.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

FINAL_MARK = re.compile(r">>\s*FINAL\s+ANSWER\s*:?", re.IGNORECASE)
# A name is 1-6 words starting with a capital letter ("Financial Analyst", "Risk Manager (Basel)").
EXPERT_CALL = re.compile(
    r"""^[ \t>*#-]*\**Expert[ \t]+(?P<name>[A-Z][\w&/().'-]*(?:[ \t]+[\w&/().'-]+){0,5}?)"""
    r"""\**[ \t]*:\**[ \t]*\n?"""
    r"""[ \t]*(?:\"\"\"|```[a-z]*)(?P<body>.*?)(?:\"\"\"|```|\Z)""",
    re.MULTILINE | re.DOTALL,
)
QUOTED = re.compile(r'^\s*(?:"""|```[a-z]*)(?P<body>.*?)(?:"""|```)', re.DOTALL)
FIELD = re.compile(
    r"^[ \t*]*(?P<key>summary|category)[ \t*]*:[ \t*]*(?P<value>.+?)[ \t*]*$",
    re.IGNORECASE | re.MULTILINE,
)
PREAMBLE = re.compile(r"\A\s*(?:here is|here's|sure|certainly|of course)\b[^\n]*\n+", re.IGNORECASE)
MIN_DOCUMENT_CHARS = 200  # shorter "documents" are a protocol failure, not a corpus entry


@dataclass(frozen=True)
class ExpertCall:
    name: str
    instruction: str


@dataclass(frozen=True)
class FinalAnswer:
    text: str
    summary: str
    category: str
    # fields the parser had to derive ("summary", "category", "quotes")
    guessed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Turn:
    """One parsed conductor reply: exactly one of `final` / `calls` is set, or neither (a protocol
    error)."""

    calls: tuple[ExpertCall, ...] = ()
    final: FinalAnswer | None = None
    error: str = ""
    notes: list[str] = field(default_factory=list)


def first_sentence(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    match = re.match(r"(.+?[.!?])(\s|$)", flat)
    sentence = match[1] if match else flat
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def parse_final(after_mark: str) -> FinalAnswer | None:
    """Parse what follows `>> FINAL ANSWER:`; None when no usable document is there."""
    guessed = []
    quoted = QUOTED.match(after_mark)
    if quoted:
        text, tail = quoted["body"], after_mark[quoted.end() :]
    else:
        # No quotes: the document runs up to the Summary/Category lines (or the end).
        guessed.append("quotes")
        fields = FIELD.search(after_mark)
        text = after_mark[: fields.start()] if fields else after_mark
        tail = after_mark[fields.start() :] if fields else ""
        text = text.strip().strip('"').strip("`")
    text = PREAMBLE.sub("", text).strip()  # "Here is the document:" is chat, not corpus
    if len(text) < MIN_DOCUMENT_CHARS:
        return None
    values = {m["key"].lower(): m["value"].strip().strip('"') for m in FIELD.finditer(tail)}
    summary = values.get("summary", "")
    if not summary:
        guessed.append("summary")
        summary = first_sentence(text)
    category = values.get("category", "")
    if not category:
        guessed.append("category")
        category = "uncategorized"
    return FinalAnswer(
        text=text,
        summary=first_sentence(summary),
        category=category.lower()[:60],
        guessed=tuple(guessed),
    )


def document_text(reply: str) -> str | None:
    """A writer's reply as a corpus document: chat preambles, wrapping quotes and fences removed;
    None when too short to be one."""
    text = reply.strip()
    quoted = QUOTED.match(text)
    if quoted:
        text = quoted["body"]
    text = PREAMBLE.sub("", text.strip().strip('"').strip("`")).strip()
    return text if len(text) >= MIN_DOCUMENT_CHARS else None


def parse_turn(reply: str, max_calls: int = 4) -> Turn:
    """Classify a conductor reply. A usable final answer wins over expert calls in the same
    reply."""
    mark = FINAL_MARK.search(reply)
    if mark:
        final = parse_final(reply[mark.end() :])
        if final:
            return Turn(final=final)
    calls = []
    for m in EXPERT_CALL.finditer(reply):
        name = " ".join(m["name"].split()).strip("*").strip()
        instruction = m["body"].strip()
        if instruction:
            calls.append(ExpertCall(name=name, instruction=instruction))
    if calls:
        notes = (
            [f"dropped {len(calls) - max_calls} expert call(s) over the per-turn cap"]
            if len(calls) > max_calls
            else []
        )
        return Turn(calls=tuple(calls[:max_calls]), notes=notes)
    if mark:
        return Turn(error="final answer without a usable document")
    return Turn(error="no expert call and no final answer")


SHARE_WORDS = 8  # a run of this many words found in an expert's reply was written by that expert
_TOKEN = re.compile(r"[a-z0-9]+")


def _windows(text: str) -> list[str]:
    words = _TOKEN.findall(text.lower())
    return [" ".join(words[i : i + SHARE_WORDS]) for i in range(len(words) - SHARE_WORDS + 1)]


def expert_share(text: str, replies: dict[str, list[str]]) -> tuple[float, str]:
    """How much of `text` the experts wrote: the share of its SHARE_WORDS-word runs found verbatim
    in their replies (name -> replies), and the expert who wrote most of it ("" when none did)."""
    runs = _windows(text)
    if not runs:
        return 0.0, ""
    found = {
        name: {w for reply in texts for w in _windows(reply)} for name, texts in replies.items()
    }
    every = set().union(*found.values()) if found else set()
    share = sum(w in every for w in runs) / len(runs)
    best = max(found, key=lambda name: sum(w in found[name] for w in runs), default="")
    return share, best if share else ""


# -- the structured protocol: the brief and the review ---------------------------------------------
BRIEF_FIELDS = ("category", "genre", "audience", "expert", "angle")
_LINE = re.compile(r"^[ \t*]*(?P<key>[A-Za-z]+)[ \t*]*:[ \t*]*(?P<value>.*?)[ \t*]*$", re.MULTILINE)
PERSONA = re.compile(r"[A-Z][A-Za-z]*(?: [A-Z][A-Za-z]*){0,5}")


class BriefError(ValueError):
    """A reply that is not a usable brief; its message is shown to the conductor."""


@dataclass(frozen=True)
class Brief:
    category: str
    genre: str
    audience: str
    expert: str  # the writer's persona ("Credit Risk Officer")
    angle: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Review:
    keep: bool
    fix: str


def reply_fields(reply: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for m in _LINE.finditer(reply):
        found.setdefault(m["key"].lower(), m["value"].strip().strip('"'))
    return found


def pick_option(value: str, options: list[str], name: str) -> str:
    """`value` if it is one of `options` (case-insensitive); any value when no options are set."""
    if not options:
        return value
    for option in options:
        if value.lower() == option.lower():
            return option
    raise BriefError(f"{name} {value!r} is not one of the options offered")


def parse_brief(reply: str, options: dict[str, list[str]]) -> Brief:
    """The brief in `reply`; `options` lists the allowed categories, genres and audiences."""
    found = reply_fields(reply)
    missing = [k for k in BRIEF_FIELDS if not found.get(k)]
    if missing:
        raise BriefError(f"missing line(s): {', '.join(k.capitalize() + ':' for k in missing)}")
    expert = " ".join(found["expert"].split())
    if not PERSONA.fullmatch(expert):
        raise BriefError(f"Expert {expert!r} is not a job title of capitalised words")
    if len(found["angle"]) < 15:
        raise BriefError("the angle is too short to write from")
    return Brief(
        category=pick_option(found["category"], options.get("category", []), "category"),
        genre=pick_option(found["genre"], options.get("genre", []), "genre"),
        audience=pick_option(found["audience"], options.get("audience", []), "audience"),
        expert=expert,
        angle=found["angle"][:200],
    )


def parse_review(reply: str) -> Review:
    """The reviewer's verdict; anything but an explicit "revise" keeps the draft (a reviewer that
    cannot answer should not cost a rewrite)."""
    found = reply_fields(reply)
    return Review(keep=found.get("verdict", "keep").lower() != "revise", fix=found.get("fix", ""))
