"""Blind reading of corpora, so that "by reading" is a protocol anyone can rerun.

Readers may be people or LLM sessions.

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
from collections.abc import Container
from pathlib import Path

from benchmarks.shares import share
from core.cli import Parser, make_dir, positive, run_command
from core.errors import UserError
from core.jsonl import read_documents, read_json

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
    + r"\s*\|".join(rf"\s*{label}\s*=\s*(?P<{label}>yes|no)\s*" for label in LABELS)
    + r'(?:\|\s*quote:\s*"?(?P<quote>.*?)"?\s*)?$',
    re.IGNORECASE,
)


def pack(corpora: dict[str, str], parts: int, seed: int, prefix: str, out: Path) -> dict:
    """Write the shuffled parts and the key; returns the key ({header id: [corpus, doc id]})."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not an empty folder; pick a new --out")
    docs, seen = [], set()
    for name, path in corpora.items():
        for number, record in enumerate(read_documents(path, label=name)):
            doc = (name, str(record.get("id", number)))
            # the key names documents by id: two with one id could not be told apart
            if doc in seen:
                raise UserError(f"{path}: id {doc[1]!r} occurs twice; pack each run's own corpus")
            seen.add(doc)
            docs.append((*doc, record["text"].strip()))
    if not 1 <= parts <= min(len(string.ascii_uppercase), len(docs)):
        raise UserError(f"--parts must be 1 to {min(26, len(docs))} for {len(docs)} documents")
    random.Random(seed).shuffle(docs)
    readers = out / "readers"
    make_dir(readers)
    key, first = {}, 0
    for part in range(parts):
        size = len(docs) // parts + (part < len(docs) % parts)  # sizes differ by at most one
        with open(readers / f"part-{string.ascii_uppercase[part]}.txt", "w") as f:
            for number in range(first, first + size):
                name, doc_id, text = docs[number]
                header = f"{prefix}{number + 1:03d}"
                key[header] = [name, doc_id]
                f.write(f"===== {header} =====\n{text}\n\n")
        first += size
    (readers / "labels.md").write_text(DEFINITIONS)
    (out / "key.json").write_text(json.dumps(key, indent=1))
    return key


def read_key(path: Path) -> dict:
    """A pack's key.json: {header id: [corpus, doc id]}."""
    key = read_json(path, "pack's key.json")
    if not all(isinstance(doc, list) and len(doc) == 2 for doc in key.values()):
        raise UserError(f"{path}: not a pack's key.json (expected header: [corpus, id])")
    return key


def read_labels(path: Path, headers: Container[str]) -> dict[str, dict[str, bool]]:
    """A reader's answer file: {header id: {label: yes?}} for its label lines (other lines, such as
    the reader's closing remarks, are skipped). A header not in `headers`, or answered twice, is
    a UserError."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the answers ({e})") from None
    labels = {}
    for line in lines:
        found = LINE.match(line)
        if not found:
            continue
        header = found["id"].upper()
        if header not in headers:
            raise UserError(f"{path}: {header} is in no key passed with --key")
        if header in labels:
            raise UserError(f"{path}: {header} is answered twice")
        labels[header] = {label: found[label].lower() == "yes" for label in LABELS}
    if not labels:
        raise UserError(f"{path}: no label lines like 'X001 | chatter=no | loop=no | gibberish=no'")
    return labels


def read_quotes(path: Path) -> dict[str, str]:
    """The non-empty quote of each label line of a reader's answer file: {header id: quote}
    (answers transcribed without quotes give none)."""
    found = (LINE.match(line) for line in path.read_text().splitlines())
    return {m["id"].upper(): m["quote"] for m in found if m and m["quote"]}


def merge_keys(keys: list[dict]) -> dict[str, tuple]:
    """The packs' keys as one {header id: (corpus, doc id)}; a header in two keys is a UserError
    (two packs with one prefix: an answer could not be placed)."""
    merged: dict[str, tuple] = {}
    for k in keys:
        for header, doc in k.items():
            if header in merged:
                raise UserError(f"header {header} is in two keys; pack with distinct --prefix")
            merged[header] = tuple(doc)
    return merged


def score(key: dict[str, tuple], answers: list[dict[str, dict[str, bool]]]) -> dict:
    """Per corpus, the documents each label marks (first answer per document) and those no
    answer covers; the agreement of the documents answered twice. `key`: merge_keys's."""
    seen: dict[tuple, list[dict]] = defaultdict(list)
    for answer in answers:
        for header, labels in answer.items():
            seen[key[header]].append(labels)
    corpora: dict[str, dict] = defaultdict(
        lambda: {"read": 0, "unanswered": 0, **dict.fromkeys(LABELS, 0)}
    )
    for doc in dict.fromkeys(key.values()):
        corpora[doc[0]]["unanswered" if doc not in seen else "read"] += 1
    for (name, _), labelled in seen.items():
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
    parser = Parser(prog="python -m benchmarks.blind_read", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("pack", help="shuffle corpora into unlabelled parts for readers")
    p.add_argument("corpora", nargs="+", metavar="NAME=CORPUS", help="a run directory or a JSONL")
    p.add_argument("--parts", type=positive(int), default=4, help="one part per reader")
    p.add_argument("--seed", type=int, default=0, help="of the shuffle")
    p.add_argument("--prefix", default="X", help="letters before each header's number")
    p.add_argument("--out", type=Path, required=True, help="a new folder")
    s = commands.add_parser("score", help="count each corpus's labels from the readers' answers")
    s.add_argument("key", type=Path, help="the pack's key.json")
    s.add_argument("labels", nargs="+", type=Path, help="the readers' answer files")
    s.add_argument(
        "--key",
        dest="more_keys",
        metavar="KEY",
        type=Path,
        action="append",
        default=[],
        help="another pack's key.json, for answers to the same documents packed again",
    )
    args = parser.parse_args(argv)

    if args.command == "pack":
        corpora = dict(item.split("=", 1) for item in args.corpora if "=" in item)
        if len(corpora) != len(args.corpora):
            raise UserError("corpora are NAME=PATH, each name once")
        if not re.fullmatch("[A-Za-z]+", args.prefix):
            raise UserError(f"--prefix must be ASCII letters, not {args.prefix!r}")
        key = pack(corpora, args.parts, args.seed, args.prefix.upper(), args.out)
        print(f"{len(key)} documents in {args.parts} parts: give readers {args.out / 'readers'}")
        return 0
    key = merge_keys([read_key(path) for path in [args.key, *args.more_keys]])
    report = score(key, [read_labels(path, key) for path in args.labels])
    for name, counts in sorted(report["corpora"].items()):
        shares = ", ".join(f"{label} {share(counts[label], counts['read'])}" for label in LABELS)
        missing = f" ({counts['unanswered']} unanswered)" if counts["unanswered"] else ""
        print(f"{name}: {counts['read']} read{missing}; {shares}")
    for label, pair in report["agreement"].items():
        if pair["pairs"]:
            print(
                f"read twice: {pair['pairs']}; {label}: same label {pair['agree']}, "
                f"yes by both {pair['both_yes']}, by either {pair['either_yes']}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_command(main))
