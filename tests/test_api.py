"""graph.api: a corpus from Python in two calls, the command line's checks and run directory."""

from __future__ import annotations

import asyncio
import json

import pytest

from benchmarks.mock_server import MockServer
from graph.api import DocumentSettings, Job, UserError, documents, generate


@pytest.fixture(scope="module")
def mock_url():
    with MockServer() as url:
        yield url


def test_generate_writes_a_run_and_documents_reads_it_back(tmp_path, mock_url):
    out = tmp_path / "run"
    run = generate(docs=3, out_dir=str(out), base_url=mock_url, concurrency=2, quiet=True)
    assert run == out
    records = list(documents(run))
    assert [r["id"] for r in records] == [f"finance-{i:06d}" for i in range(3)]
    assert all(r["text"] and r["written_by"] == "experts" for r in records)
    manifest = json.loads((out / "manifest.json").read_text())
    # the shipped default ran ('auto' is the structured protocol) and the manifest says so
    assert manifest["protocol"] == "structured" and manifest["config"]["concurrency"] == 2
    # a second call in the same process resumes the same directory to a larger budget
    generate(
        DocumentSettings(out_dir=str(out), base_url=mock_url), Job(docs=5, resume=True, quiet=True)
    )
    assert len(list(documents(out / "corpus.jsonl"))) == 5


def test_generate_inside_a_running_event_loop(tmp_path, mock_url):
    # A notebook's cell runs inside an event loop: the run takes a thread of its own.
    async def cell():
        return generate(docs=1, out_dir=str(tmp_path / "nb"), base_url=mock_url, quiet=True)

    run = asyncio.run(cell())
    assert len(list(documents(run))) == 1


def test_bad_settings_raise_the_command_lines_message_and_touch_nothing(tmp_path, mock_url):
    out = tmp_path / "run"
    with pytest.raises(UserError, match="unknown setting doc "):
        generate(doc=3, out_dir=str(out))
    with pytest.raises(UserError, match="template-icl needs --seed-docs"):
        generate(method="template-icl", out_dir=str(out), base_url=mock_url)
    with pytest.raises(UserError, match="is not one of"):
        generate(method="templates", out_dir=str(out), base_url=mock_url)
    assert not out.exists()
    generate(docs=1, out_dir=str(out), base_url=mock_url, quiet=True)
    before = (out / "corpus.jsonl").read_bytes()
    with pytest.raises(UserError, match="pass --resume to continue it"):
        generate(docs=2, out_dir=str(out), base_url=mock_url, quiet=True)
    assert (out / "corpus.jsonl").read_bytes() == before
    with pytest.raises(UserError, match="corpus not found"):
        list(documents(tmp_path / "missing"))
