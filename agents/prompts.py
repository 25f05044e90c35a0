"""Prompt files, grammar files and domain vocabularies, loaded from `prompts/` (or a user's
override folder).

Templates use `{name}` placeholders. Only known names are substituted, so documents or prompts that
contain other braces (JSON, LaTeX) pass through untouched. A template that lacks a placeholder the
code relies on is a user error, reported with the file and the missing name.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from agents.grammar import check as check_grammar
from core.errors import UserError

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"

# file name -> placeholders it must contain (it may also use the optional ones).
REQUIRED: dict[str, set[str]] = {
    "conductor.md": set(),
    "expert.md": set(),
    "task.md": {"seeds", "recall"},
    "protocol_error.md": set(),
    "last_round.md": set(),
    "too_similar.md": {"similarity", "summary"},
    "fallback.md": {"seeds"},
    # The quality gate's note to a writer on a refused draft ({problem}: what the rule found; an
    # empty quality_* fragment sends no note). The shipped one is empty: the writer gets its
    # instruction alone again, a fresh sample (rewrites after a note read as chatter nearly twice
    # as often; docs/quality.md), which needs a writer temperature above 0. In the text protocol
    # the conductor is told, quality_conductor.md.
    "quality.md": set(),
    "quality_conductor.md": {"problem"},
    # The text protocol: a final answer the experts did not write (graph/documents/text.py:
    # conductor).
    "final_needs_experts.md": {"share", "required"},
    # The structured protocol (graph/documents/structured.py): a grammar-bounded brief, then
    # experts write and review.
    "structured/conductor.md": set(),
    "structured/task.md": {"seed"},
    "structured/seed_keywords.md": {"keywords"},
    "structured/seed_document.md": {"document"},
    "structured/brief_error.md": {"error"},
    "structured/write.md": {"expert", "angle"},
    "structured/review.md": {"draft"},
    "structured/rewrite.md": {"instruction", "draft", "fix"},
    "structured/too_similar.md": {"summary"},
    "structured/summary.md": set(),
    # The baselines (graph/baselines/graph.py): one fixed prompt, optionally preceded by context.
    "templates/plain.md": {"keywords"},
    "templates/prior.md": {"documents"},
    "templates/icl.md": {"examples"},
}
# grammar file -> rules filled in per request (agents/grammar.py checks the rest at load time).
GRAMMARS: dict[str, set[str]] = {
    "brief.gbnf": {"category", "genre", "audience", "keyword"},
    "review.gbnf": set(),
    "conductor.gbnf": set(),
}
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
FRAGMENTS = "fragments"  # prompts/fragments.yaml: the short pieces around the prompt files
# The gate's notes to a writer are each filled with every figure (words, keywords): an override may
# use any of them, or none.
ANY_PLACEHOLDERS = "quality_"


def uses(template: str, placeholder: str) -> bool:
    return "{" + placeholder + "}" in template


def fill(template: str, **values: object) -> str:
    """Replace `{name}` for the given names only; leave every other brace alone."""
    return _PLACEHOLDER.sub(lambda m: str(values[m[1]]) if m[1] in values else m[0], template)


@dataclass(frozen=True)
class Domain:
    name: str
    description: str
    keywords: list[str]
    genres: list[str] = field(default_factory=list)
    audiences: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    fallback_expert: str = "Writer"

    def sample_seeds(self, k: int, rng: random.Random) -> dict:
        """What one document is conditioned on: k distinct keywords from the pool, plus a genre
        and an audience when the domain lists them."""
        if k < 1:
            raise UserError("keywords per document must be at least 1")
        return {
            "seeds": rng.sample(self.keywords, min(k, len(self.keywords))),
            "genre": rng.choice(self.genres) if self.genres else "",
            "audience": rng.choice(self.audiences) if self.audiences else "",
        }


@dataclass(frozen=True)
class PromptSet:
    """All prompt texts of a run, plus the domain, and a hash that identifies them."""

    texts: dict[str, str]
    domain: Domain
    hash: str

    def render(self, name: str, **values: object) -> str:
        return fill(self.texts[name], **values)

    def uses(self, name: str, placeholder: str) -> bool:
        return uses(self.texts[name], placeholder)

    def grammar(self, name: str, rules: dict[str, list[str]]) -> str:
        """A grammar file with its per-request `rules` (name -> allowed options) added."""
        return render_grammar(self.texts[name], rules)

    def fragment(self, key: str, **values: object) -> str:
        """A short piece of prompts/fragments.yaml, filled in."""
        return fill(self.texts[f"{FRAGMENTS}/{key}"], **values)

    def lines(
        self, key: str, rows: list[dict], empty: str | None = "none_yet", sep: str = "\n"
    ) -> str:
        """One fragment per row, joined; the `empty` fragment (or nothing) when there are none."""
        return sep.join(self.fragment(key, **row) for row in rows) or (
            self.fragment(empty) if empty else ""
        )


def available_domains(folder: Path = PROMPTS_DIR) -> list[str]:
    return sorted(p.stem for p in (folder / "domains").glob("*.yaml"))


def read_text(path: Path) -> str:
    """A user-editable file's text; one that is not UTF-8 is one line (UserError)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None


def read_prompt(name: str, override: Path | None) -> tuple[Path, str]:
    for folder in ([override] if override else []) + [PROMPTS_DIR]:
        path = folder / name
        if path.is_file():
            return path, read_text(path)
        if path.exists():  # a folder named like the file: silently using the shipped one misleads
            raise UserError(f"{path} is not a file")
    raise UserError(
        f"prompt file not found: {name} (looked in {override or ''} {PROMPTS_DIR})".replace(
            "  ", " "
        )
    )


def _as_strings(path: Path, data: dict, key: str, required: bool = False) -> list[str]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise UserError(f"{path}: '{key}' must be a list of strings")
    out = list(dict.fromkeys(str(v).strip() for v in value if str(v).strip()))
    if required and not out:
        raise UserError(f"{path}: '{key}' is empty; add at least one entry")
    return out


def load_domain(name: str, override: Path | None = None) -> tuple[Domain, str]:
    """The domain's vocabulary and the raw YAML text (for hashing)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name or ""):
        raise UserError(f"invalid domain name {name!r}")
    names = set(available_domains()) | set(available_domains(override) if override else [])
    if name not in names:
        raise UserError(f"unknown domain {name!r} (available: {', '.join(sorted(names))})")
    path, text = read_prompt(f"domains/{name}.yaml", override)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where} is not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping with 'keywords', got {type(data).__name__}")
    domain = Domain(
        name=str(data.get("name") or name),
        description=str(data.get("description") or f"{name} text"),
        keywords=_as_strings(path, data, "keywords", required=True),
        genres=_as_strings(path, data, "genres"),
        audiences=_as_strings(path, data, "audiences"),
        categories=_as_strings(path, data, "categories"),
        fallback_expert=str(data.get("fallback_expert") or "Writer"),
    )
    return domain, text


def _fragments_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise UserError(f"{path} is not a file")
    try:
        data = yaml.safe_load(read_text(path)) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise UserError(
            f"{path}:{f' line {mark.line + 1}' if mark else ''} is not valid YAML "
            f"({getattr(e, 'problem', e)})"
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise UserError(f"{path}: expected 'name: text' lines")
    return data


def load_fragments(override: Path | None = None) -> dict[str, str]:
    """prompts/fragments.yaml, with the keys an override folder's copy sets; each keeps its
    placeholders."""
    base = _fragments_file(PROMPTS_DIR / f"{FRAGMENTS}.yaml")
    own = override / f"{FRAGMENTS}.yaml" if override else None
    if own is not None and own.exists():
        mine = _fragments_file(own)
        if unknown := sorted(set(mine) - set(base)):
            raise UserError(
                f"{own}: unknown fragment(s) {', '.join(unknown)} (known: {', '.join(base)})"
            )
        for key, text in mine.items():
            if key.startswith(ANY_PLACEHOLDERS):
                continue
            if missing := sorted(
                set(_PLACEHOLDER.findall(base[key])) - set(_PLACEHOLDER.findall(text))
            ):
                raise UserError(
                    f"{own}: fragment {key} is missing placeholder(s): "
                    f"{', '.join('{' + m + '}' for m in missing)}"
                )
        base.update(mine)
    return {f"{FRAGMENTS}/{key}": text for key, text in base.items()}


def _check_names(folder: Path) -> None:
    """Every file of an override folder must be named like a shipped prompt file (new domains
    aside): a misplaced file (write.md for structured/write.md) would otherwise be ignored without a
    word."""
    shipped = {p.relative_to(PROMPTS_DIR).as_posix() for p in PROMPTS_DIR.rglob("*") if p.is_file()}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if (
            path.is_file()
            and name not in shipped
            and not name.startswith(("domains/", "."))
            and "/." not in name
        ):
            close = sorted(s for s in shipped if s.endswith("/" + path.name))
            hint = (
                f" (did you mean {' or '.join(close)}?)"
                if close
                else " (overrides use the names of files in prompts/)"
            )
            raise UserError(f"{path}: no prompt file has this name{hint}")


def load_prompts(
    domain: str, override: str | Path | None = None, inline: dict[str, str] | None = None
) -> PromptSet:
    """Read every prompt file (override folder first), apply inline overrides, check
    placeholders."""
    folder = Path(override) if override else None
    if folder is not None and not folder.is_dir():
        raise UserError(f"prompts folder not found: {folder}")
    if folder is not None:
        _check_names(folder)
    texts = {name: read_prompt(name, folder)[1] for name in (*REQUIRED, *GRAMMARS)}
    texts.update(load_fragments(folder))
    texts.update({k: v for k, v in (inline or {}).items() if v})
    # a bad grammar can crash llama.cpp's server: refuse it here
    for name, provided in GRAMMARS.items():
        check_grammar(texts[name], str(read_prompt(name, folder)[0]), provided)
    for name, needed in REQUIRED.items():
        missing = sorted(n for n in needed if not uses(texts[name], n))
        if missing:
            raise UserError(
                f"prompt {name} is missing placeholder(s): "
                f"{', '.join('{' + m + '}' for m in missing)}"
            )
    dom, yaml_text = load_domain(domain, folder)
    digest = hashlib.sha256()
    for name in sorted(texts):
        digest.update(f"{name}\0{texts[name]}\0".encode())
    digest.update(yaml_text.encode())
    return PromptSet(texts=texts, domain=dom, hash=digest.hexdigest()[:16])


# -- grammar files: per-request rules (agents/grammar.py checks the files) -------------------------
def literal(value: str) -> str:
    """A GBNF string literal for `value` (quotes, backslashes and control characters escaped)."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 32:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def choice_rule(name: str, options: list[str]) -> str:
    """`name ::= "a" | "b"`; with no options (a domain that lists none), any short phrase."""
    if not options:
        return f"{name} ::= [A-Za-z] [A-Za-z0-9,' ]{{2,60}}"
    return f"{name} ::= " + " | ".join(literal(o) for o in options)


def defined_rules(text: str) -> set[str]:
    """The rule names a grammar text defines (by their `name ::=` lines)."""
    return {m[1] for m in re.finditer(r"^\s*([A-Za-z0-9-]+)\s*::=", text, re.MULTILINE)}


def render_grammar(text: str, extra: dict[str, list[str]] | None = None) -> str:
    """The grammar with `extra` rules (name -> allowed literal options) appended where the text does
    not define them itself (a user may pin a rule in the file)."""
    extra = extra or {}
    defined = defined_rules(text)
    added = [choice_rule(name, options) for name, options in extra.items() if name not in defined]
    return text.rstrip("\n") + "\n" + "\n".join(added) + ("\n" if added else "")


def starting_at(text: str, rule: str) -> str:
    """The same grammar with `rule` as its start (the old root kept, renamed, unused); the text
    unchanged when it defines no `rule` (a user's grammar may drop it)."""
    defined = defined_rules(text)
    if rule not in defined or rule == "root":
        return text
    renamed = re.sub(r"^(\s*)root(\s*::=)", r"\1any-turn\2", text, count=1, flags=re.MULTILINE)
    return f"root ::= {rule}\n" + renamed


def grammar_samples(texts: dict[str, str], grammars: dict[str, set[str]]) -> dict[str, str]:
    """Each grammar file as a server would receive it, its per-request rules filled with a stand-in
    option (what a server's own parser must accept does not depend on which options)."""
    return {
        name: render_grammar(texts[name], {rule: ["example"] for rule in provided})
        for name, provided in grammars.items()
    }
