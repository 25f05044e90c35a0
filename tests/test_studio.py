"""`langgraph dev` (the server behind LangGraph Studio) runs the document graph; its trace reads
back."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from benchmarks.mock_server import MockServer

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dev_server(tmp_path):
    port = free_port()
    cli = Path(sys.executable).parent / "langgraph"
    env = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false"}
    log = open(tmp_path / "dev.log", "wb")
    process = subprocess.Popen(
        [
            str(cli),
            "dev",
            "--no-browser",
            "--no-reload",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            assert process.poll() is None, (tmp_path / "dev.log").read_text()[-2000:]
            try:
                if httpx.get(url + "/ok", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail(
                "langgraph dev did not answer /ok in time: "
                f"{(tmp_path / 'dev.log').read_text()[-2000:]}"
            )
        yield url
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def test_studio_runs_one_document_and_exposes_its_trace(dev_server, tmp_path):
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=dev_server)
    graphs = {a["graph_id"] for a in client.assistants.search()}
    assert graphs == {
        "metasynth",
        "template",
        "template-prior",
        "template-icl",
        "metasynth-instruct",
    }
    # Studio draws its input and settings forms from these
    for assistant in client.assistants.search():
        schemas = client.assistants.get_schemas(assistant["assistant_id"])
        assert "index" in schemas["input_schema"]["properties"], assistant["graph_id"]
        assert schemas["context_schema"]["properties"]["domain"]["default"] == "finance"
    with MockServer() as mock_url:
        thread = client.threads.create()
        context = {
            "base_url": mock_url,
            "model": "mock-conductor",
            "out_dir": str(tmp_path / "run"),
            "domain": "finance",
            "protocol": "text",  # the paper's protocol: parallel experts in the trace
        }
        final = client.runs.wait(
            thread["thread_id"], "metasynth", input={"index": 0}, context=context
        )

    assert final["ended"] == "final" and final["result"]["id"] == "finance-000000"
    history = client.threads.get_history(thread["thread_id"], limit=50)
    steps = [tuple(state["next"]) for state in reversed(history)]
    assert steps == [
        ("__start__",),
        ("seed",),
        ("recall",),
        ("conductor",),
        ("expert", "expert"),
        ("relay",),
        ("conductor",),
        ("gate",),
        (),
    ]
    messages = history[0]["values"]["messages"]
    assert [m["type"] for m in messages] == ["system", "human", "ai", "human", "ai"]
    assert (
        "Analyst's output:" in messages[3]["content"]
        and ">> FINAL ANSWER:" in messages[4]["content"]
    )
    assert (tmp_path / "run" / "corpus.jsonl").exists()


def test_studio_runs_a_template_baseline(dev_server, tmp_path):
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=dev_server)
    context = {"out_dir": str(tmp_path / "run"), "domain": "finance", "recall_k": 2}
    with MockServer() as mock_url:
        context["base_url"] = mock_url
        for index in range(2):
            thread = client.threads.create()
            final = client.runs.wait(
                thread["thread_id"], "template-prior", input={"index": index}, context=context
            )
    assert final["ended"] == "final" and final["result"]["method"] == "template-prior"
    history = client.threads.get_history(thread["thread_id"], limit=20)
    assert [tuple(s["next"]) for s in reversed(history)] == [
        ("__start__",),
        ("seed",),
        ("prompt",),
        ("write",),
        ("commit",),
        (),
    ]
    prompt = history[0]["values"]["messages"][0]["content"]
    assert "most recent documents" in prompt and len(history[0]["values"]["shown"]) == 1
