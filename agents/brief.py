"""The structured protocol's replies: the conductor's brief and the reviewer's verdict.

A small model cannot keep the free-text protocol (agents/protocol.py), so the structured protocol
asks for short fields, one per line, bounded by a grammar (prompts/brief.gbnf, prompts/review.gbnf).
With the grammar the reply always has this shape; without one (a server that takes no grammar,
`--constrain off`) the parser is the check, and what it refuses is a protocol error.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

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
