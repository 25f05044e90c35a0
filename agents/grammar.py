"""GBNF grammars for constrained protocol turns: checked at start-up against the portable subset.

Grammars are files users edit like the prompts (`prompts/*.gbnf`). llama-cpp-python does not
validate a grammar before using it (an invalid one can crash its server) and vLLM's xgrammar reads
a slightly different dialect, so every grammar is checked here first against the portable subset
both accept, with an error that names the file and line:

- rule names of letters, digits and dashes (llama.cpp has no `_`), at least one `name ::= ...` line
  (vLLM would read the text as Lark otherwise), a `root` rule, every referenced rule defined;
- string literals and character classes with the escapes \\n \\r \\t \\\\ \\" \\[ \\] \\xHH \\uHHHH
  (no `\\-`: put a dash last in a class);
- repetition `*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}` with counts <= 2000; no empty alternative.

Rules the file references but does not define are supplied per request (`provided`;
agents.prompts.PromptSet.grammar fills them): the structured protocol fills `category`, `genre` and
`audience` with the options it allows for this document, from the domain's vocabulary and the
memory. How each server takes a grammar: agents/calls.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import UserError

MAX_REPEAT = 2000
_NAME = re.compile(r"[A-Za-z0-9-]+")
_ESCAPES = {"n", "r", "t", "\\", '"', "[", "]", "x", "u"}


class GrammarError(UserError):
    pass


@dataclass
class _Cursor:
    text: str
    where: str  # file name, for messages
    pos: int = 0

    def line(self) -> int:
        return self.text.count("\n", 0, self.pos) + 1

    def fail(self, message: str) -> GrammarError:
        return GrammarError(f"{self.where}:{self.line()}: {message}")

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def skip_space(self, newlines: bool) -> None:
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c == "#":
                while self.pos < len(self.text) and self.text[self.pos] != "\n":
                    self.pos += 1
            elif c in " \t" or (newlines and c in "\r\n"):
                self.pos += 1
            else:
                return


def _escape(cur: _Cursor) -> None:
    """At a backslash inside a literal or class: accept only the portable escapes."""
    c = cur.peek(2)[1:]
    if c not in _ESCAPES:
        raise cur.fail(
            f'unsupported escape \\{c} (portable: \\n \\r \\t \\\\ \\" \\[ \\] \\xHH \\uHHHH'
            + ("; put a dash last in a character class instead" if c == "-" else "")
            + ")"
        )
    width = {"x": 2, "u": 4}.get(c, 0)
    digits = cur.text[cur.pos + 2 : cur.pos + 2 + width]
    if width and not re.fullmatch(r"[0-9A-Fa-f]" * width, digits):
        raise cur.fail(f"\\{c} needs {width} hex digits")
    cur.pos += 2 + width


def _literal(cur: _Cursor) -> None:
    cur.pos += 1
    while True:
        c = cur.peek()
        if c == "" or c == "\n":
            raise cur.fail("unterminated string literal")
        if c == '"':
            cur.pos += 1
            return
        if c == "\\":
            _escape(cur)
        else:
            cur.pos += 1


def _char_class(cur: _Cursor) -> None:
    cur.pos += 1
    if cur.peek() == "^":
        cur.pos += 1
    empty = True
    while True:
        c = cur.peek()
        if c == "" or c == "\n":
            raise cur.fail("unterminated character class")
        if c == "]":
            if empty:
                raise cur.fail("empty character class")
            cur.pos += 1
            return
        empty = False
        if c == "\\":
            _escape(cur)
        else:
            cur.pos += 1


def _repeat(cur: _Cursor) -> None:
    match = re.compile(r"\{\s*(\d+)\s*(?:(,)\s*(\d*)\s*)?\}").match(cur.text, cur.pos)
    if not match:
        raise cur.fail("malformed repetition: expected {m}, {m,} or {m,n}")
    low, high = int(match[1]), int(match[3]) if match[3] else None
    if max(low, high or 0) > MAX_REPEAT:
        raise cur.fail(f"repetition count over {MAX_REPEAT} (vLLM's xgrammar refuses it)")
    if high is not None and high < low:
        raise cur.fail(f"repetition {{{low},{high}}}: the maximum is below the minimum")
    cur.pos = match.end()


def _alternatives(cur: _Cursor, refs: dict[str, int], nested: bool) -> None:
    start = cur.pos
    while True:
        if not _sequence(cur, refs, nested):
            if cur.peek() and cur.peek() not in "|)\r\n":
                raise cur.fail(f"unexpected {cur.peek()!r}")
            # name the line of the empty alternative, not where the next text starts
            cur.pos = start
            raise cur.fail("empty alternative (vLLM's xgrammar refuses it): use ( ... )? instead")
        if cur.peek() != "|":
            return
        start = cur.pos
        cur.pos += 1
        cur.skip_space(newlines=True)


def _sequence(cur: _Cursor, refs: dict[str, int], nested: bool) -> int:
    """Parse one sequence of items; return how many there were (0: an empty alternative)."""
    items = 0
    while True:
        c = cur.peek()
        if c == '"':
            _literal(cur)
        elif c == "[":
            _char_class(cur)
        elif c == "(":
            cur.pos += 1
            cur.skip_space(newlines=True)
            _alternatives(cur, refs, nested=True)
            if cur.peek() != ")":
                raise cur.fail("expected ')'")
            cur.pos += 1
        elif c == ".":
            cur.pos += 1
        elif (name := _NAME.match(cur.text, cur.pos)) and not cur.text.startswith(
            "::=", _after_space(cur, name.end())
        ):
            refs.setdefault(name[0], cur.line())
            cur.pos = name.end()
        else:
            break
        items += 1
        cur.skip_space(newlines=nested)
        while cur.peek() in ("*", "+", "?", "{") and cur.peek():
            if cur.peek() == "{":
                _repeat(cur)
            else:
                cur.pos += 1
            cur.skip_space(newlines=nested)
    return items


def _after_space(cur: _Cursor, pos: int) -> int:
    while pos < len(cur.text) and cur.text[pos] in " \t":
        pos += 1
    return pos


def check(text: str, where: str = "grammar", provided: set[str] = frozenset()) -> set[str]:
    """Raise GrammarError (file:line: what) unless `text` is portable GBNF; return its rule names.
    `provided`: rules supplied at render time, which the text may reference without defining."""
    cur = _Cursor(text, where)
    defined: dict[str, int] = {}
    refs: dict[str, int] = {}
    cur.skip_space(newlines=True)
    while cur.pos < len(text):
        name = _NAME.match(text, cur.pos)
        if not name:
            raise cur.fail(f"expected a rule name (letters, digits, dashes), got {cur.peek()!r}")
        cur.pos = name.end()
        cur.skip_space(newlines=False)
        if not text.startswith("::=", cur.pos):
            hint = (
                " (rule names take letters, digits and dashes, no '_')" if cur.peek() == "_" else ""
            )
            raise cur.fail(f"expected '::=' after rule name {name[0]!r}{hint}")
        if name[0] in defined:
            raise cur.fail(f"rule {name[0]!r} is defined twice (first on line {defined[name[0]]})")
        defined[name[0]] = cur.line()
        cur.pos += 3
        cur.skip_space(newlines=False)
        _alternatives(cur, refs, nested=False)
        if cur.pos < len(text) and cur.peek() not in "\r\n":
            raise cur.fail(f"unexpected {cur.peek()!r}")
        cur.skip_space(newlines=True)
    if not defined:
        raise GrammarError(
            f"{where}: no 'name ::= ...' rule (vLLM would read the text as Lark, not GBNF)"
        )
    if "root" not in defined:
        raise GrammarError(f"{where}: no 'root ::= ...' rule")
    missing = {n: line for n, line in refs.items() if n not in defined and n not in provided}
    if missing:
        name, line = min(missing.items(), key=lambda kv: kv[1])
        raise GrammarError(f"{where}:{line}: rule {name!r} is used but never defined")
    return set(defined)
