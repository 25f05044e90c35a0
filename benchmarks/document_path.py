"""The project files and functions one document passes through, from `graph.run`'s main to its line
in corpus.jsonl (issue #22's measure of the wiring: a LangGraph template's request touches six).

    .venv/bin/python -m benchmarks.document_path [--protocol structured|text] [--method template]
        [--functions]

Runs one document against the mock server (benchmarks/mock_server.py) with a profiler on every
thread and prints, for each project file whose functions ran, how many functions ran in each phase:
`start` (flags, checks, run directory, servers, the Run built), `document` (from the driver handing
the document to the graph until its record is back: the graph's nodes, the LLM calls, the gates,
the commit) and `finish` (the summary and the manifest). Module bodies (imports) are not counted:
an import is not a step of the path.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("start", "document", "finish")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.document_path")
    p.add_argument("--protocol", default="auto", choices=("auto", "structured", "text"))
    p.add_argument("--method", default="metasynth")
    p.add_argument("--functions", action="store_true", help="also list each file's functions")
    args = p.parse_args(argv)

    from benchmarks.mock_server import MockServer
    from graph.run import main as run

    seen: dict[str, dict[str, set[str]]] = {}
    skip = (ROOT / ".venv", ROOT / "tests", ROOT / "benchmarks")
    phase = ["start"]

    def profile(frame, event, arg):
        code = frame.f_code
        if event != "call" or code.co_name == "<module>":
            return
        if code.co_name == "write_document":
            phase[0] = "document"
        elif code.co_name == "summarize":
            phase[0] = "finish"
        path = Path(code.co_filename)
        if path.is_relative_to(ROOT) and not any(path.is_relative_to(s) for s in skip):
            name = str(path.relative_to(ROOT))
            seen.setdefault(name, {k: set() for k in PHASES})[phase[0]].add(code.co_name)

    with MockServer() as url, tempfile.TemporaryDirectory() as tmp:
        flags = ["--docs", "1", "--out", f"{tmp}/run", "--base-url", url, "--quiet"]
        flags += ["--concurrency", "1", "--method", args.method]
        if args.method == "metasynth":
            flags += ["--protocol", args.protocol]
        sys.setprofile(profile)
        threading.setprofile(profile)
        try:
            status = run(flags)
        finally:
            sys.setprofile(None)
            threading.setprofile(None)
    print(f"{'file':<32} {'start':>6} {'document':>9} {'finish':>7}")
    for name in sorted(seen):
        counts = [len(seen[name][k]) for k in PHASES]
        print(f"{name:<32} {counts[0]:>6} {counts[1]:>9} {counts[2]:>7}")
        if args.functions:
            for k in PHASES:
                if seen[name][k]:
                    print(f"    {k}: {', '.join(sorted(seen[name][k]))}")
    for k in PHASES:
        files = [n for n in seen if seen[n][k]]
        print(f"{k}: {len(files)} files, {sum(len(seen[n][k]) for n in files)} functions")
    print(f"in all: {len(seen)} files (exit {status})")
    return status


if __name__ == "__main__":
    sys.exit(main())
