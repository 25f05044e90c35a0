"""What the quality gate did in finished runs, and a check of their corpora by datatrove itself.

    .venv/bin/python -m benchmarks.gate_report RUN_DIR...
        [--metrics REPORT/metrics.json... --versus template]

Per run directory: documents committed and rejected, drafts the gate sent back (share, by rule),
documents rejected as low quality (by rule), seconds per document tried, and two re-checks of the
committed documents: **datatrove's own** `GopherRepetitionFilter` (with its defaults) run directly
on the text, an implementation independent of memory/quality.py's, so a gate that let looping text
through would show here; and the gate's text rules run again on the committed text (length,
repetition, task text with the record's filled-in values and the talk check; not the echo of the
writer's instruction, which the record does not keep), each rule's share. With `--metrics` (one
metrics.report metrics.json per seed), it counts on how many diversity metrics each corpus is more
diverse than `--versus` (the direction from the report), per file and on the means over the files.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from statistics import mean

from benchmarks.quality_real import datatrove_passes
from core.cli import Parser, run_command
from core.errors import UserError
from core.jsonl import read_json, read_jsonl
from memory import quality
from memory.embedder import default_embedder

# The diversity metrics the issue counts (8): the near-duplicate and rejected-draft rows of a
# report are about the gates, not the corpus's diversity.
NOT_DIVERSITY = ("near_duplicates", "rejection_rate")


def read_report(path: Path) -> dict:
    """A metrics.report metrics.json: its `metrics` and `corpora`."""
    report = read_json(path, "metrics.report metrics.json")
    if not (isinstance(report.get("metrics"), dict) and isinstance(report.get("corpora"), dict)):
        raise UserError(f"{path}: not a metrics.report metrics.json (no 'metrics' and 'corpora')")
    return report


def run_row(root: Path) -> dict:
    manifest = read_json(root / "manifest.json", "run manifest")
    if not isinstance(manifest.get("this_run"), dict):
        raise UserError(f"{root}: its manifest has no 'this_run' counts (a finished run's)")
    records = read_jsonl(root / "corpus.jsonl") if (root / "corpus.jsonl").exists() else []
    gates = manifest.get("gates", {})
    tried = manifest["this_run"]["tried"] or 1
    flagged = datatrove_passes([r["text"] for r in records]).count(False)
    rules, talk = Counter(), quality.Talk(default_embedder())
    for r in records:
        values = [*r.get("seeds", []), r.get("genre", ""), r.get("audience", "")]
        values += list((r.get("brief") or {}).values())
        talked = talk(r["text"])
        rules.update(quality.check(r["text"], "", None, values, talked).flags)
    n = max(1, len(records))
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
        "datatrove_repetition_share": round(flagged / n, 3),
        "recheck_flagged_by_rule": {rule: rules[rule] for rule in quality.RULES if rules[rule]},
        "recheck_share_by_rule": {rule: round(rules[rule] / n, 3) for rule in rules},
    }


def means(reports: list[dict]) -> dict:
    """The metrics.report of several seeds as one: each corpus's mean of each metric."""
    names = set.intersection(*(set(r["corpora"]) for r in reports))
    corpora = {}
    for name in sorted(names):
        values = [r["corpora"][name] for r in reports]
        corpora[name] = {"reference": values[0].get("reference")}
        for metric in reports[0]["metrics"]:
            found = [v[metric] for v in values if v.get(metric) is not None]
            corpora[name][metric] = mean(found) if len(found) == len(values) else None
    return {"corpora": corpora, "metrics": reports[0]["metrics"]}


def wins(report: dict, versus: str) -> dict[str, str]:
    """Per corpus: on how many of the diversity metrics it is more diverse than `versus`."""
    corpora = report.get("corpora") or {}
    if versus not in corpora:
        raise UserError(f"--versus {versus}: no such corpus (the report has {', '.join(corpora)})")
    directions = {k: d for k, d in report["metrics"].items() if k not in NOT_DIVERSITY}
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


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m benchmarks.gate_report", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument(
        "--metrics", type=Path, nargs="+", help="metrics.report metrics.json files (one per seed)"
    )
    parser.add_argument("--versus", default="template")

    def command() -> int:
        args = parser.parse_args(argv)
        if not args.runs and not args.metrics:
            raise UserError("give run directories, or --metrics METRICS.JSON...")
        reports = {path: read_report(path) for path in args.metrics or []}  # before the runs' work
        for root in args.runs:
            print(json.dumps(run_row(root)), flush=True)
        for path, report in reports.items():
            for name, line in wins(report, args.versus).items():
                print(f"{path}: {name} ahead of {args.versus} on {line}")
        if len(reports) > 1:
            report = means(list(reports.values()))
            for name, values in report["corpora"].items():
                shown = {k: round(v, 4) for k, v in values.items() if isinstance(v, float)}
                print(f"mean over {len(reports)}: {name} {json.dumps(shown)}")
            for name, line in wins(report, args.versus).items():
                print(f"mean over {len(reports)}: {name} ahead of {args.versus} on {line}")
        return 0

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
