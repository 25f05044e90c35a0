"""What the quality gate did in finished runs, and a check of their corpora by datatrove itself.

    .venv/bin/python -m benchmarks.gate_report RUN_DIR...
        [--metrics REPORT/metrics.json --versus template]

Per run directory: documents committed and rejected, drafts the gate sent back (share, by rule),
documents rejected as low quality (by rule), seconds per document tried, and the committed
documents' flagged share by **datatrove's own** `GopherRepetitionFilter` (with its defaults) run
directly on the text: an implementation independent of memory/quality.py's, so a gate that let
looping text through would show here. With `--metrics`, it counts on how many of a metrics.report's
diversity metrics each corpus is more diverse than `--versus` (the direction from the report).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.quality_real import datatrove_passes
from core.jsonl import read_jsonl


def run_row(root: Path) -> dict:
    manifest = json.loads((root / "manifest.json").read_text())
    records = read_jsonl(root / "corpus.jsonl") if (root / "corpus.jsonl").exists() else []
    gates = manifest.get("gates", {})
    tried = manifest["this_run"]["tried"] or 1
    flagged = datatrove_passes([r["text"] for r in records]).count(False)
    return {
        "run": str(root),
        "method": manifest.get("method"),
        "committed": len(records),
        "rejected": manifest["this_run"]["rejected"],
        "tried": manifest["this_run"]["tried"],
        "drafts_checked": gates.get("drafts_checked"),
        "refused_share": gates.get("refused_share"),
        "refused_by_rule": gates.get("refused_by_rule"),
        "rejected_low_quality_by_rule": gates.get("rejected_low_quality_by_rule"),
        "s_per_doc_tried": round(manifest["wall_seconds"] / tried, 2),
        "datatrove_repetition_flagged": flagged,
        "datatrove_repetition_share": round(flagged / max(1, len(records)), 3),
    }


def wins(metrics_path: Path, versus: str) -> dict[str, str]:
    report = json.loads(metrics_path.read_text())
    corpora, directions = report["corpora"], report["metrics"]
    out = {}
    for name, values in corpora.items():
        if name == versus or values.get("reference"):
            continue
        ahead = [
            k
            for k, d in directions.items()
            if values.get(k) is not None
            and corpora[versus].get(k) is not None
            and (values[k] > corpora[versus][k]) == d["higher_is_more_diverse"]
            and values[k] != corpora[versus][k]
        ]
        out[name] = f"{len(ahead)} of {len(directions)} ({', '.join(ahead)})"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--metrics", type=Path, help="a metrics.report metrics.json")
    parser.add_argument("--versus", default="template")
    args = parser.parse_args()
    for root in args.runs:
        print(json.dumps(run_row(root)), flush=True)
    if args.metrics:
        for name, line in wins(args.metrics, args.versus).items():
            print(f"{name} ahead of {args.versus} on {line}")


if __name__ == "__main__":
    main()
