"""MetaSynth-Instruct (graph/instruct/) with chat models stubbed at the
model boundary."""

import json
import random
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import document, run_doc, settings_as

import benchmarks.mock_server as mock
import graph.instruct.memory as instruct_memory
from agents.instruction import (
    complexity,
    load_instruct_prompts,
    parse_check,
    parse_evolved,
    parse_plan,
)
from core.errors import UserError
from core.rundir import INSTRUCTIONS
from graph import session
from graph.export import main as export_main
from graph.instruct.cli import evolution_stats
from graph.instruct.cli import main as instruct_main
from graph.instruct.graph import graph
from graph.instruct.memory import InstructRun, read_inputs, read_sources
from graph.instruct.nodes import source_position
from graph.session import run_dir, studio_run
from graph.settings import DocumentSettings, InstructSettings

TOPICS = [
    "Northwind Bank's 2023 lending growth",
    "the Riverside pension fund's bond ladder",
    "Acme Insurance's catastrophe reinsurance",
    "Helios Energy's convertible bond issue",
]
DERIVED = "Explain why {topic} changed, according to the figures given."


def text_of(messages):
    return "\n".join(m.text for m in messages)


def topic_of(text):
    return next((t for t in TOPICS if t in text), "the topic")


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "src"
    path.mkdir()
    (path / "corpus.jsonl").write_text(
        "".join(
            json.dumps({"id": f"finance-{i:06d}", "domain": "finance", "text": document(t)}) + "\n"
            for i, t in enumerate(TOPICS)
        )
    )
    return path


@pytest.fixture
def ictx(ctx, source):
    return settings_as(
        InstructSettings, ctx, corpus=str(source), out_dir=str(source.parent / "instruct")
    )


def records(ictx, name="instructions.jsonl"):
    path = run_dir(ictx) / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def offered(messages, label):
    return re.search(rf"^{label}: (.+)$", text_of(messages), re.MULTILINE)[1].split("; ")


def conductor_fn(messages):
    """Plans with the last type offered; for a step, the first move offered."""
    if "Moves offered:" in messages[-1].text:
        move = re.search(r"Moves offered: ([^;\n]+)", messages[-1].text)[1]
        return f"Move: {move}\nExpert: Credit Risk Analyst\n"
    kind = offered(messages, "Types offered for this instruction")[-1]
    return f"Type: {kind}\nFocus: the lending figures for 2023\nExpert: Credit Risk Analyst\n"


def experts(evolve=None, answerable=lambda instruction: True, derive=None):
    """Expert stub: derivation, evolution (`evolve(instruction, n)`), the yes/no check, the
    answer."""
    calls = {"evolve": 0}

    def respond(messages):
        last = messages[-1].text
        if "Reply with one line:\nInstruction:" in last:
            return f"Instruction: {(derive or DERIVED).format(topic=topic_of(last))}\n"
        if "Rewrite the instruction to make it more complex" in last:
            calls["evolve"] += 1
            current = re.search(r'Here is an instruction about it:\n"(.+)"', last)[1]
            if evolve:
                return evolve(current, calls["evolve"])
            if calls["evolve"] == 1:
                return (
                    f"Added: a length limit\nInstruction: {current} Answer in at most 120 words "
                    "and list two risks.\n"
                )
            return (
                f"Added: reasoning\nInstruction: {current} Then explain step by step why "
                "depositors should care.\n"
            )
        if "Answerable:" in last:
            instruction = re.search(r'Instruction:\n"(.+)"', last)[1]
            return (
                "Answerable: yes\nReason: The figures are given."
                if answerable(instruction)
                else "Answerable: no\nReason: The document has no data on competitors."
            )
        return "The response, grounded in the document: " + document(topic_of(last), 2)

    return respond


def test_derive_evolve_answer_and_the_record(ictx, stub_models):
    conductor, expert = stub_models(conductor_fn, experts())
    state = run_doc(graph, {"index": 0}, ictx)
    assert state["ended"] == "final"
    [record] = records(ictx)
    assert record["instruction"].startswith(DERIVED.format(topic=topic_of(record["instruction"])))
    assert (
        record["instruction"] == record["text"]
        and "Answer in at most 120 words" in record["instruction"]
    )
    assert record["source_id"].startswith("finance-0000") and record["response"].startswith(
        "The response"
    )
    moves = [e["move"] for e in record["evolution"]]
    assert (
        moves[0] == "derive"
        and len(set(moves[1:])) == 2
        and set(moves[1:]) <= set(load_instruct_prompts(ictx.domain).moves)
    )
    assert len(record["evolution"]) == 3 and all(e["accepted"] for e in record["evolution"])
    assert record["complexity"]["steps"] == 2 and record["complexity"]["constraints"] >= 2
    assert (
        record["type"] in load_instruct_prompts(ictx.domain).types
        and record["plan"]["expert"] == "Credit Risk Analyst"
    )
    assert record["experts"] == [
        "Credit Risk Analyst",
        "Credit Risk Analyst",
        "Checker",
        "Credit Risk Analyst",
        "Checker",
        "Credit Risk Analyst",
    ]
    for key in ("model", "prompt_hash", "ended", "id", "created_at", "tokens"):
        assert record[key], key
    # The plan's grammar admits exactly the types offered; a step's grammar only the moves offered.
    types = offered(conductor.seen[0], "Types offered for this instruction")
    rule = re.search(r"^type ::= (.+)$", conductor.extra[0]["grammar"], re.MULTILINE)[1]
    assert sorted(json.loads(f"[{rule.replace(' | ', ',')}]")) == sorted(types)
    assert "move ::= " in conductor.extra[1]["grammar"]
    # Fresh eyes: every expert conversation is the system prompt and one request; the answer sees no
    # other instruction.
    assert all(len(c) == 2 for c in expert.seen)
    assert all("Instructions already derived" not in text_of(c) for c in expert.seen)
    assert (
        expert.extra[0]["grammar"].startswith("# An expert's derived") and expert.extra[-1] is None
    )


def test_a_paraphrase_step_and_an_unanswerable_step_are_rejected_and_recorded(ictx, stub_models):
    def evolve(current, n):
        if n == 1:  # a paraphrase: the same request with one word changed
            return f"Added: nothing\nInstruction: {current.replace('Explain', 'Describe')}\n"
        return (
            f"Added: a comparison\nInstruction: {current} Then compare it with the bank's three "
            "largest competitors over the last five years, in a table.\n"
        )

    conductor, _ = stub_models(
        conductor_fn, experts(evolve, answerable=lambda i: "competitors" not in i)
    )
    run_doc(graph, {"index": 0}, replace(ictx, evolve_rounds=2, paraphrase_threshold=0.95))
    [record] = records(ictx)
    derived, first, second = record["evolution"]
    assert derived["accepted"] and not first["accepted"] and not second["accepted"]
    assert (
        first["why"].startswith("a paraphrase of the previous version")
        and first["similarity"] >= 0.95
    )
    assert (
        second["why"].startswith("not answerable from the document")
        and "competitors" in second["instruction"]
    )
    assert record["instruction"] == derived["instruction"] and record["complexity"]["steps"] == 0
    # a move tried once is not offered again on this instruction
    assert first["move"] != second["move"]
    # the conductor is told how the last step went
    assert "rejected: a paraphrase" in conductor.seen[2][-1].text
    assert evolution_stats([record])["steps_rejected_by_reason"] == {
        "paraphrase": 1,
        "not answerable": 1,
    }


def test_drifting_and_meta_text_steps_are_rejected(ictx, stub_models):
    def evolve(current, n):
        if n == 1:  # another instruction altogether
            return (
                "Added: a new topic\nInstruction: Describe the history of the Roman aqueducts and "
                "how they were built.\n"
            )
        return (
            f"Added: a rewrite\nInstruction: {current} Rewrite this instruction so that it is "
            "longer and harder.\n"
        )

    stub_models(conductor_fn, experts(evolve))
    run_doc(graph, {"index": 0}, ictx)
    [record] = records(ictx)
    assert [e["check"] for e in record["evolution"]] == ["derived", "drift", "meta-text"]
    assert record["evolution"][1]["similarity"] < 0.5 and record["complexity"]["steps"] == 0
    assert evolution_stats([record])["steps_rejected_by_reason"] == {"drift": 1, "meta-text": 1}


def test_the_gate_sends_a_near_duplicate_instruction_back_then_rejects_it(ictx, stub_models):
    # Every document gets the same derived instruction (up to one word): the second is a
    # near-duplicate.
    same = experts(derive="Explain how the reported lending figures changed and why.")
    conductor, _ = stub_models(conductor_fn, same)
    ictx = replace(ictx, evolve_rounds=0, max_revisions=1)
    run_doc(graph, {"index": 0}, ictx)
    state = run_doc(graph, {"index": 1}, ictx)
    assert state["ended"] == "rejected" and state["revisions"] == 1
    assert len(records(ictx)) == 1
    [rejected] = records(ictx, "rejects.jsonl")
    assert rejected["reason"] == "too similar" and rejected["nearest_similarity"] >= 0.85
    assert "too close to one the dataset already has" in text_of(conductor.seen[-1])

    # A conductor told about the collision that plans another focus gets a new instruction through.
    def derive_on_focus(messages):
        last = messages[-1].text
        if "Reply with one line:\nInstruction:" in last and "counterparty" in last:
            return (
                "Instruction: List the counterparty risks that the reinsurance treaty leaves "
                "uncovered.\n"
            )
        return same(messages)

    def replanning(messages):
        reply = conductor_fn(messages)
        return (
            reply.replace("the lending figures for 2023", "counterparty risk")
            if "too close" in text_of(messages)
            else reply
        )

    stub_models(replanning, derive_on_focus)
    state = run_doc(graph, {"index": 2}, replace(ictx, max_revisions=2))
    assert state["ended"] == "final" and state["revisions"] == 1 and len(records(ictx)) == 2


def test_the_memory_offers_least_covered_types_and_shows_siblings(ictx, stub_models):
    conductor, _ = stub_models(
        conductor_fn, experts(derive="Instruction number {topic} about figures.")
    )
    ictx = replace(ictx, evolve_rounds=0, choices=2, max_revisions=0)
    n = len(read_sources(ictx.corpus))
    run_doc(graph, {"index": 0}, ictx)
    first = records(ictx)[0]
    # The same source document again, in the second pass of the seeded order.
    again = next(
        i
        for i in range(n, 2 * n)
        if source_position(ictx.seed, i, n) == source_position(ictx.seed, 0, n)
    )
    run_doc(graph, {"index": again}, ictx)
    second_prompt = text_of(conductor.seen[-1])
    assert first["type"] not in offered(conductor.seen[-1], "Types offered for this instruction")
    assert (
        first["source_id"] == records(ictx)[-1]["source_id"]
        and first["instruction"]
        in second_prompt.split("Instructions already derived from this document")[1]
    )


def test_unusable_plans_lead_to_the_fallback_plan(ictx, stub_models):
    stub_models(lambda m: "I think a question would be good.", experts())
    state = run_doc(graph, {"index": 0}, replace(ictx, evolve_rounds=0))
    assert state["ended"] == "fallback" and state["protocol_errors"] == 3
    assert records(ictx)[0]["plan"]["expert"] == "Financial Writer"


def test_parsers_and_the_complexity_measure():
    plan = parse_plan(
        "Type: Factual question\nFocus: the 2023 dividend cut\nExpert: Equity Analyst\n",
        ["factual question"],
    )
    assert plan.type == "factual question" and plan.expert == "Equity Analyst"
    assert parse_evolved("Added: a limit\nInstruction: Summarise the note in 50 words.") == (
        "Summarise the note in 50 words.",
        "a limit",
    )
    assert parse_evolved("Sure! Here you go.") is None
    assert parse_check("Answerable: yes\nReason: stated.") == (True, "stated.")
    assert parse_check("I am not sure.")[0] is False
    simple = complexity("What was the dividend in 2023?")
    evolved = complexity(
        "What was the dividend in 2023? Explain why it changed, using at least two figures, "
        "and then compare it with 2022 in no more than 100 words.",
        steps=2,
    )
    assert simple["parts"] == 1 and simple["constraints"] == 0
    assert evolved["parts"] >= 2 and evolved["constraints"] >= 2 and evolved["reasoning"] >= 2
    assert evolved["score"] > simple["score"] and evolved["steps"] == 2


# -- the CLI against the mock server (real HTTP, a real subprocess) --------------------------------
DOCUMENT_REPLY = mock.reply_for


def mock_reply(messages: list[dict]) -> str:
    """The mock server's replies to the instruction protocol (no grammar: the parsers are the
    check)."""
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    last = str(messages[-1]["content"])
    conversation = "\n".join(str(m["content"]) for m in messages)
    if "instruction dataset" in system:
        if "Moves offered:" in last:
            move = re.search(r"Moves offered: ([^;\n]+)", last)[1]
            return f"Move: {move}\nExpert: Senior Analyst\n"
        kind = re.search(r"Types offered for this instruction: ([^;\n]+)", conversation)[1]
        where = re.search(r"Source document \((.+)\)", conversation)[1]
        size = re.search(r"The dataset holds (\d+)", conversation)[1]
        focus = f"point {size} of {where}, try {conversation.count('too close')}"
        return f"Type: {kind}\nFocus: {focus}\nExpert: Senior Analyst\n"
    if "Reply with one line:\nInstruction:" in last:
        focus = re.search(r"about this part of the document: (.+)\.", last)[1]
        return f"Instruction: {mock.prose(focus, 2)} What does this imply?\n"
    if "Rewrite the instruction" in last:
        current = re.search(r'Here is an instruction about it:\n"(.+)"', last)[1]
        move = re.search(r"make it more complex: (.+?)\. Keep", last)[1].replace(
            "the document", "the source"
        )
        return f"Added: {move}\nInstruction: {current} In your answer, {move}.\n"
    if "Answerable:" in last:
        return "Answerable: yes\nReason: It is in the text.\n"
    return DOCUMENT_REPLY(messages)


@pytest.fixture
def instruct_server(monkeypatch):
    monkeypatch.setattr(mock, "reply_for", mock_reply)
    with mock.MockServer(latency=0.02) as url:
        yield url


def test_cli_writes_a_set_a_manifest_and_refuses_to_overwrite(
    tmp_path, source, instruct_server, capsys
):
    out = tmp_path / "set"
    common = [
        "--corpus",
        str(source),
        "--out",
        str(out),
        "--base-url",
        instruct_server,
        "--quiet",
        "--threshold",
        "0.99",
        "--paraphrase-threshold",
        "0.999",
    ]
    assert instruct_main([*common, "--instructions", "6", "--concurrency", "2"]) == 0
    lines = [json.loads(line) for line in (out / "instructions.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and {r["source_id"] for r in lines} == {
        f"finance-{i:06d}" for i in range(4)
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "metasynth-instruct" and manifest["instructions_in_set"] == 6
    assert (
        manifest["steps_accepted"] == 12
        and manifest["steps_rejected"] == 0
        and manifest["config"]["evolve_rounds"] == 2
    )
    assert manifest["llm"]["by_role"]["conductor"]["calls"] >= 18
    assert instruct_main(common) == 2
    assert "already holds instructions" in capsys.readouterr().err
    # graph.run into an instruction run is refused before it opens (and truncates) its memory.
    from graph.run import main as run_main

    embeddings = out / "memory" / "embeddings.f32"
    size = embeddings.stat().st_size
    assert size and run_main(["--out", str(out), "--base-url", instruct_server, "--quiet"]) == 2
    assert "another kind of run (instructions.jsonl)" in capsys.readouterr().err
    assert embeddings.stat().st_size == size
    for bad, message in (
        (["--corpus", str(tmp_path / "nope")], "not found"),
        ([*common, "--evolve-rounds", "-1", "--resume"], "cannot be negative"),
        (
            ["--corpus", str(source), "--out", str(source), "--base-url", instruct_server],
            "source run directory",
        ),
        (  # the corpus file named instead of its run: the same folder, refused the same way
            ["--corpus", str(source / "corpus.jsonl"), "--out", str(source)],
            "source run directory",
        ),
    ):
        assert instruct_main(bad) == 2 and message in capsys.readouterr().err

    # Export: a Hugging Face dataset with a messages column, and chat JSONL.
    assert export_main([str(out), "--format", "jsonl", "--out", str(tmp_path / "chat.jsonl")]) == 0
    chats = [json.loads(line) for line in (tmp_path / "chat.jsonl").read_text().splitlines()]
    assert chats[0]["messages"] == [
        {"role": "user", "content": lines[0]["instruction"]},
        {"role": "assistant", "content": lines[0]["response"]},
    ]
    assert "text" not in chats[0] and chats[0]["evolution"] == lines[0]["evolution"]
    assert export_main([str(out), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    from datasets import load_from_disk

    dataset = load_from_disk(str(tmp_path / "hf"))
    assert len(dataset) == 6 and dataset[0]["messages"][1]["content"] == lines[0]["response"]

    # metrics.report reads an instruction set (the run, or its chat export): the instructions are
    # the texts.
    from metrics.corpora import load

    measured = load(str(out))
    assert measured.name == "set" and measured.texts == [r["instruction"] for r in lines]
    assert measured.embeddings.shape == (6, 384) and measured.rejection_rate == 0
    assert load(str(tmp_path / "chat.jsonl")).texts == measured.texts


def test_sigkill_at_random_moments_then_resume(tmp_path, source, instruct_server):
    out, target = tmp_path / "set", 12
    rng = random.Random(5)
    command = [
        sys.executable,
        "-m",
        "graph.instruct",
        "--corpus",
        str(source),
        "--out",
        str(out),
        "--instructions",
        str(target),
        "--concurrency",
        "3",
        "--quiet",
        "--base-url",
        instruct_server,
        "--threshold",
        "0.99",
        "--paraphrase-threshold",
        "0.999",
    ]
    path = out / "instructions.jsonl"
    for _ in range(2):
        resume = ["--resume"] if path.exists() else []
        have = path.read_bytes().count(b"\n") if resume else 0
        want = have + rng.randint(1, 3)
        process = subprocess.Popen(
            command + resume, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while (
            time.monotonic() < deadline
            and process.poll() is None
            and not (path.exists() and path.read_bytes().count(b"\n") >= want)
        ):
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.2))
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert path.read_bytes().count(b"\n") < target  # the kills landed mid-run
    done = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-1500:]
    committed = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in committed] == [f"finance-instr-{i:06d}" for i in range(target)]
    assert len({r["instruction"] for r in committed}) == target
    assert len(np.fromfile(out / "memory" / "embeddings.f32", dtype=np.float32)) == target * 384


def test_studio_derives_its_folder_beside_the_source_and_refuses_a_corpus_run(source):
    """Studio's form may leave out_dir empty: instructions go to <corpus>-instruct, as on the
    command line, never into the source run (whose memory holds documents). A folder that holds a
    corpus is refused before anything in it changes."""
    assert InstructSettings(corpus=str(source)).directory() == f"{source}-instruct"
    assert InstructSettings(corpus="runs/x.jsonl").directory() == "runs/x-instruct"
    runtime = SimpleNamespace(context=InstructSettings(domain="finance"))
    with pytest.raises(UserError, match="set corpus"):
        InstructRun.of(runtime)
    runtime.context = InstructSettings(domain="finance", corpus=str(source.parent / "typo"))
    with pytest.raises(UserError, match="not found"):
        InstructRun.of(runtime)
    assert not (source.parent / "typo-instruct").exists()  # no folder, no lock, no server
    before = sorted(p.name for p in source.iterdir())
    runtime.context = InstructSettings(domain="finance", corpus=str(source), out_dir=str(source))
    with pytest.raises(UserError, match=r"holds another kind of run \(corpus.jsonl\)"):
        InstructRun.of(runtime)
    assert sorted(p.name for p in source.iterdir()) == before  # no lock, no memory folder


def test_studio_reads_an_instruction_runs_inputs_once_and_hands_them_to_the_builder(
    source, tmp_path, monkeypatch
):
    """Before Studio first opens a directory it reads the source corpus and prompt files (a typo
    is one line, no folder); the Run it then builds holds those reads: none a second time."""
    reads = []
    monkeypatch.setattr(
        instruct_memory, "read_sources", lambda corpus: reads.append(corpus) or [{"id": "a"}]
    )
    writer = SimpleNamespace(accounting=None)  # no servers: the model boundary
    monkeypatch.setattr(instruct_memory, "routers", lambda *_: (writer, writer))
    monkeypatch.setattr(instruct_memory, "instruction_memory", lambda settings: "memory")

    @contextmanager
    def no_servers(settings, job, console, build, prompts, rundir):
        yield build(settings, prompts, None, None)

    monkeypatch.setattr(session, "open_run", no_servers)
    settings = InstructSettings(domain="finance", corpus=str(source), out_dir=str(tmp_path / "i"))
    run = studio_run(settings, instruct_memory.build_instruct_run, INSTRUCTIONS, read_inputs)
    assert reads == [str(source.resolve())]
    assert run.sources == [{"id": "a"}] and run.instruct.domain.name == "finance"


def test_studio_refuses_to_write_documents_into_an_instruction_run(tmp_path):
    """The document graph under Studio gets the command line's refusals too: a folder holding
    instructions, or a file, is one line and stays as it was."""
    out = tmp_path / "instruct"
    out.mkdir()
    (out / "instructions.jsonl").write_text('{"id": "finance-instr-000000", "text": "Explain."}\n')
    with pytest.raises(UserError, match=r"holds another kind of run \(instructions.jsonl\)"):
        studio_run(DocumentSettings(domain="finance", out_dir=str(out)))
    assert [p.name for p in out.iterdir()] == ["instructions.jsonl"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="exists and is not a directory"):
        studio_run(DocumentSettings(domain="finance", out_dir=str(tmp_path / "file")))
