"""Blind reading of corpora: "by reading" as a protocol anyone can rerun, with people or LLM
sessions as readers.

    python -m benchmarks.blind_read pack NAME=CORPUS... --parts 4 --seed 0 --prefix X --out DIR
    python -m benchmarks.blind_read score DIR/key.json LABELS... [--key OTHER/key.json]

`pack` shuffles the documents of every corpus together (a run directory or a JSONL with `text`)
and writes them, without their corpus or id, to DIR/readers/part-A.txt, part-B.txt, ... under
headers like `===== X001 =====`, with DIR/readers/labels.md, the label definitions the readers get
(fixed here, before any reading). Readers see DIR/readers only; DIR/key.json says which document
each header is. `score` reads the readers' answers, one line per document
(`X001 | chatter=yes | loop=no | gibberish=no | quote: "..."`), and prints, per corpus, how many
documents each label marks, with 95 % Wilson intervals. A document read twice (two readers, or
two packs of the same corpus: pass each pack's key) counts once, by the first file's label; the
pairs give the readers' agreement per label.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections import defaultdict
from pathlib import Path

from benchmarks.writer_prompts import share
from core.cli import Parser, run_command
from core.errors import UserError
from core.jsonl import read_documents

LABELS = ("chatter", "loop", "gibberish")
DEFINITIONS = """\
For each document decide three labels, using exactly these definitions:

- CHATTER: yes if at least one sentence speaks about the writing task instead of the subject:
  the writer talks about its instructions, the request, its own output or process ("this
  document/text/paragraph", "as requested", "I will write", "your previous attempt", "the first
  sentence", "word count", "here is"), addresses whoever commissioned the text, echoes a brief's
  fields (keywords:, audience:, genre:), or is AI-assistant talk. Addressing the document's own
  in-genre audience (a leaflet telling patients "talk to your doctor", a paper saying "in this
  study we") is NOT chatter.
- LOOP: yes if a sentence or clause is repeated 3 or more times, or the text degenerates into a
  run of near-identical sentences or lists.
- GIBBERISH: yes if a substantial part (more than a few words) is not readable English (random
  tokens, another language, broken words).

Read every document completely; do not skim, sample or decide with keyword scripts. Answer one
line per document, in order, exactly in this form:

X001 | chatter=yes/no | loop=yes/no | gibberish=yes/no | quote: "<the shortest verbatim sentence
that justifies any yes, else empty>"
"""
LINE = re.compile(
    r"^\s*(?P<id>[A-Z]+\d+)\s*\|"
    + r"\s*\|".join(rf"\s*{label}\s*=\s*(?P<{label}>yes|no)\s*" for label in LABELS),
    re.IGNORECASE,
)


def pack(corpora: dict[str, str], parts: int, seed: int, prefix: str, out: Path) -> dict:
    """Write the shuffled parts and the key; returns the key ({header id: [corpus, doc id]})."""
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty; pick a new --out")
    docs = [
        (name, str(record.get("id", number)), record["text"].strip())
        for name, path in corpora.items()
        for number, record in enumerate(read_documents(path, label=name))
    ]
    random.Random(seed).shuffle(docs)
    size = -(-len(docs) // parts)
    readers = out / "readers"
    readers.mkdir(parents=True)
    key = {}
    for part in range(parts):
        with open(readers / f"part-{string.ascii_uppercase[part]}.txt", "w") as f:
            for number in range(part * size, min((part + 1) * size, len(docs))):
                name, doc_id, text = docs[number]
                header = f"{prefix}{number + 1:03d}"
                key[header] = [name, doc_id]
                f.write(f"===== {header} =====\n{text}\n\n")
    (readers / "labels.md").write_text(DEFINITIONS)
    (out / "key.json").write_text(json.dumps(key, indent=1))
    return key


def read_labels(path: Path, key: dict) -> dict[str, dict[str, bool]]:
    """A reader's answer file: {header id: {label: yes?}} for its label lines (other lines, such as
    the reader's closing remarks, are skipped); an id not in the key is a UserError."""
    labels = {}
    for line in path.read_text().splitlines():
        found = LINE.match(line)
        if not found:
            continue
        if found["id"] not in key:
            raise UserError(f"{path}: {found['id']} is in no key passed with --key")
        labels[found["id"]] = {label: found[label].lower() == "yes" for label in LABELS}
    if not labels:
        raise UserError(f"{path}: no label lines like 'X001 | chatter=no | loop=no | gibberish=no'")
    return labels


def score(keys: list[dict], answers: list[dict[str, dict[str, bool]]]) -> dict:
    """Per corpus, the documents each label marks (first answer per document); the agreement of
    the documents answered twice."""
    key = {header: tuple(doc) for k in keys for header, doc in k.items()}
    seen: dict[tuple, list[dict]] = defaultdict(list)
    for answer in answers:
        for header, labels in answer.items():
            seen[key[header]].append(labels)
    corpora: dict[str, dict] = defaultdict(lambda: {"read": 0, **dict.fromkeys(LABELS, 0)})
    for (name, _), labelled in seen.items():
        corpora[name]["read"] += 1
        for label in LABELS:
            corpora[name][label] += labelled[0][label]
    twice = [labelled[:2] for labelled in seen.values() if len(labelled) > 1]
    agreement = {
        label: {
            "pairs": len(twice),
            "agree": sum(a[label] == b[label] for a, b in twice),
            "both_yes": sum(a[label] and b[label] for a, b in twice),
            "either_yes": sum(a[label] or b[label] for a, b in twice),
        }
        for label in LABELS
    }
    return {"corpora": dict(corpora), "agreement": agreement}


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m benchmarks.blind_read", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("pack")
    p.add_argument("corpora", nargs="+", metavar="NAME=CORPUS")
    p.add_argument("--parts", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prefix", default="X")
    p.add_argument("--out", type=Path, required=True)
    s = commands.add_parser("score")
    s.add_argument("key", type=Path)
    s.add_argument("labels", nargs="+", type=Path)
    s.add_argument("--key", dest="more_keys", type=Path, action="append", default=[])
    args = parser.parse_args(argv)

    if args.command == "pack":
        corpora = dict(item.split("=", 1) for item in args.corpora if "=" in item)
        if len(corpora) != len(args.corpora) or not args.prefix.isalpha():
            raise UserError("corpora are NAME=PATH, each name once; --prefix is letters")
        key = pack(corpora, args.parts, args.seed, args.prefix.upper(), args.out)
        print(f"{len(key)} documents in {args.parts} parts: give readers {args.out / 'readers'}")
        return 0
    keys = [json.loads(path.read_text()) for path in [args.key, *args.more_keys]]
    everything = {header for k in keys for header in k}
    report = score(keys, [read_labels(path, everything) for path in args.labels])
    for name, counts in sorted(report["corpora"].items()):
        shares = ", ".join(f"{label} {share(counts[label], counts['read'])}" for label in LABELS)
        print(f"{name}: {counts['read']} read; {shares}")
    for label, pair in report["agreement"].items():
        if pair["pairs"]:
            print(
                f"read twice: {pair['pairs']}; {label}: same label {pair['agree']}, "
                f"yes by both {pair['both_yes']}, by either {pair['either_yes']}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_command(main))
