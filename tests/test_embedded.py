"""The real embedded model (SmolLM2-135M-Instruct on llama.cpp's own server), end to end."""

import json
import os
import subprocess
import sys

import pytest
from conftest import real_data

pytestmark = pytest.mark.slow


def orphan_servers() -> set[str]:
    """Embedded servers whose parent is no Python process (the run that started one has gone): other
    runs' servers on the same machine, with their parent alive, are not counted."""
    rows = [
        line.split(None, 2)
        for line in subprocess.run(
            ["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True
        ).stdout.splitlines()[1:]
    ]
    args = {pid: cmd for pid, _, cmd in rows}
    return {
        pid
        for pid, ppid, cmd in rows
        if "agents.xllama" in cmd and "python" not in args.get(ppid, "")
    }


def test_three_documents_keep_the_structured_protocol_on_the_embedded_model(tmp_path):
    """The default run (structured protocol, grammar-constrained turns): every document is planned
    by the conductor and written by the experts it named, none by the fallback."""
    before = orphan_servers()
    out = tmp_path / "run"
    secret = "sk-test-4f9c2e7d1b"  # a key is sent to the server but never written anywhere
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "graph.run",
            "--domain",
            "finance",
            "--docs",
            "3",
            "--out",
            str(out),
            "--expert-max-tokens",
            "384",
            "--concurrency",  # one at a time, so each brief sees the genres already used
            "1",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "OPENAI_API_KEY": secret},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
    assert len(records) == 3
    for record in records:
        assert record["model"] == "smollm2-135m-instruct" and record["ended"] == "final"
        assert (
            record["protocol"] == "structured" and record["brief"]["expert"] == record["experts"][0]
        )
        assert len(record["text"]) >= 200 and record["tokens"] > 40
        assert record["nearest_similarity"] is None or record["nearest_similarity"] < 0.85
    # the memory offered each document genres not yet used
    assert len({r["genre"] for r in records}) == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["grammar"] == {"conductor": ["llama.cpp"], "expert": ["llama.cpp"]}
    # No document needed the fallback and every one was written by the experts; a try may end
    # rejected by the quality gate or for an unusable (too short) reply, never by the protocol.
    assert manifest["this_run"]["fallback"] == 0
    assert all(r["written_by"] == "experts" for r in records)
    rejects = out / "rejects.jsonl"
    reasons = (
        {json.loads(line)["reason"] for line in rejects.read_text().splitlines()}
        if rejects.exists()
        else set()
    )
    assert reasons <= {"low quality", "no document"}, reasons
    # real token usage from the server
    assert manifest["llm"]["by_role"]["conductor"]["completion_tokens"] > 0
    for written in (out / "manifest.json", out / "server.log", out / "corpus.jsonl"):
        assert secret not in written.read_text()
    assert secret not in done.stderr + done.stdout
    assert not orphan_servers() - before  # the server this run started is gone (no orphan)


def test_a_template_baseline_and_its_report_on_the_embedded_model(tmp_path):
    """The real model writes 3 template-icl documents; the report measures them against the real
    text."""
    out = tmp_path / "icl"
    data = real_data("finance/fpb.jsonl")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "graph.run",
            "--method",
            "template-icl",
            "--seed-docs",
            str(data),
            "--docs",
            "3",
            "--out",
            str(out),
            "--expert-max-tokens",
            "256",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(
        r["method"] == "template-icl" and len(r["text"]) >= 200 for r in records
    )
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "metrics.report",
            str(out),
            "--reference",
            str(data),
            "--out",
            str(tmp_path / "report"),
            "--t2v-batches",
            "2",
            "--t2v-batch-size",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert report.returncode == 0, report.stderr[-2000:]
    corpora = json.loads((tmp_path / "report" / "metrics.json").read_text())["corpora"]
    assert corpora["icl"]["documents"] == corpora["fpb"]["documents"] == 3
    assert corpora["icl"]["rejection_rate"] is not None
    # three distinct documents: a diversity coefficient strictly between identical (0) and
    # orthogonal (1)
    assert all(0 < corpora[name]["task2vec"] < 1 for name in ("icl", "fpb")), corpora


def test_the_server_serves_concurrent_documents(tmp_path):
    """llama.cpp's own server from a prebuilt wheel answers documents in flight at once from
    separate slots, with the same grammar-constrained protocol. With --overwrite over an earlier
    corpus, the server's log (read below) survives the clearing."""
    before = orphan_servers()
    out = tmp_path / "run"
    out.mkdir()
    (out / "corpus.jsonl").write_text('{"id": "old", "text": "an earlier run"}\n')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "graph.run",
            "--overwrite",
            "--domain",
            "finance",
            "--docs",
            "3",
            "--out",
            str(out),
            "--concurrency",
            "3",
            "--reviews",
            "0",
            "--expert-max-tokens",
            "256",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(
        r["ended"] == "final" and len(r["text"]) >= 200 for r in records
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["grammar"] == {"conductor": ["llama.cpp"], "expert": ["llama.cpp"]}
    busy = most = 0  # requests in slots at once, from the server's own log
    for line in (out / "server.log").read_text().splitlines():
        busy += ("launch_slot_:" in line) - ("slot      release:" in line)
        most = max(most, busy)
    assert most >= 2, "requests were never served side by side"
    assert not orphan_servers() - before  # the server stopped with the run
