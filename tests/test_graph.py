"""Routing of the document graph, with chat models stubbed at the model boundary."""

import json
import re
from dataclasses import replace

import pytest
from conftest import document, final_answer, relayed, run_doc, stub_memory

from graph.documents.graph import graph
from graph.session import prompts_for, run_dir
from memory.embedder import default_embedder

FALLBACK_NAME = "Financial Writer"  # prompts/domains/finance.yaml


def text_of(messages):
    return "\n".join(m.text for m in messages)


def corpus(ctx):
    path = run_dir(ctx) / "corpus.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def expert_echo(messages):
    name = messages[-1].text.split("\n")[0].removeprefix("You are Expert ").rstrip(".")
    if name == FALLBACK_NAME:
        return document("fallback writing on liquidity coverage")
    instruction = messages[-1].text.split("\n\n", 1)[-1]
    return f"reply from {name}. {document(instruction)}"  # a draft on what it was asked


@pytest.fixture
def solo(ctx):
    """The routing tests below are about other mechanics: the conductor may write alone."""
    return replace(ctx, min_expert_share=0.0)


def test_parallel_experts_see_only_their_instruction_and_replies_return_in_order(ctx, stub_models):
    def conductor_fn(messages):
        if "Analyst's output" in text_of(messages):  # the final answer is the Analyst's draft
            return final_answer(relayed(messages, "Analyst"), "Capital buffers.", "Banking")
        keywords = re.search(r"keywords: ([^;\n]+)", text_of(messages))[1]
        return (
            f'Expert Analyst:\n"""\nExplain capital buffers through {keywords}.\n"""\n'
            'Expert Editor:\n"""\nGive two style rules.\n"""'
        )

    conductor, expert = stub_models(conductor_fn, expert_echo)
    state = run_doc(graph, {"index": 0}, ctx)

    assert state["ended"] == "final" and state["round"] == 2
    assert state["experts"] == ["Analyst", "Editor"]
    relay = conductor.seen[1][-1].text
    assert relay.startswith("ROUND 2: ")
    assert relay.index('Analyst\'s output:\n"""\nreply from Analyst') < relay.index(
        'Editor\'s output:\n"""\nreply from Editor'
    )

    # Before any expert has written, the turn's grammar offers only expert calls; then both.
    first, second = (call["grammar"] for call in conductor.extra)
    assert first.startswith("root ::= calls\n") and "any-turn ::= calls | final" in first
    assert second == prompts_for(ctx).texts["conductor.gbnf"]
    conductor_history = text_of(conductor.seen[0])
    assert len(expert.seen) == 2
    for conversation in expert.seen:  # fresh eyes: system prompt + one instruction, nothing else
        assert len(conversation) == 2
        assert conversation[0].text == prompts_for(ctx).texts["expert.md"]
        assert conversation[1].text in (
            "You are Expert Analyst.\n\nExplain capital buffers through "
            f"{', '.join(state['seeds'])}.",
            "You are Expert Editor.\n\nGive two style rules.",
        )
        assert "ROUND" not in text_of(conversation) and "Conductor" not in text_of(conversation)
        assert (
            conversation[1].text.split("\n\n", 1)[1] not in conductor_history.split("Expert", 1)[0]
        )
    [record] = corpus(ctx)
    assert record["experts"] == ["Analyst", "Editor"] and record["category"] == "banking"
    assert record["ended"] == "final" and record["rounds"] == 2 and record["tokens"] > 50
    assert (
        record["written_by"] == "experts"
        and record["writer"] == "Analyst"
        and record["expert_share"] == 1.0
    )
    assert record["seeds"] == state["seeds"] and len(record["seeds"]) == 4


def test_round_cap_tells_the_conductor_then_falls_back(ctx, stub_models):
    ctx = replace(ctx, max_rounds=3)
    conductor, expert = stub_models(
        lambda m: 'Expert Analyst:\n"""\nMore analysis.\n"""', expert_echo
    )
    state = run_doc(graph, {"index": 0}, ctx)

    assert len(conductor.seen) == 3
    last_round = prompts_for(ctx).texts["last_round.md"].strip()
    assert (
        conductor.seen[2][-1].text.startswith("ROUND 3: ")
        and last_round in conductor.seen[2][-1].text
    )
    assert last_round not in conductor.seen[1][-1].text
    assert state["ended"] == "fallback" and state["fallback_reason"] == "round cap"
    assert state["experts"] == ["Analyst", "Analyst", FALLBACK_NAME]
    assert corpus(ctx)[0]["ended"] == "fallback"


def test_protocol_errors_are_answered_then_trigger_the_fallback(ctx, stub_models):
    conductor, _ = stub_models(lambda m: "I think banks are interesting.", expert_echo)
    state = run_doc(graph, {"index": 0}, ctx)

    error_text = prompts_for(ctx).texts["protocol_error.md"].strip()
    assert len(conductor.seen) == 3  # max_protocol_errors
    assert [c[-1].text.startswith(f"ROUND {i + 1}: ") for i, c in enumerate(conductor.seen)] == [
        True
    ] * 3
    assert error_text in conductor.seen[1][-1].text and error_text in conductor.seen[2][-1].text
    assert state["protocol_errors"] == 3 and state["ended"] == "fallback"
    assert state["fallback_reason"] == "protocol errors"
    record = corpus(ctx)[0]
    assert record["protocol_errors"] == 3 and "category" in record["guessed"]
    # nearest label by embedding
    assert record["category"] in prompts_for(ctx).domain.categories


def test_one_protocol_error_then_a_final_answer_counts_as_final(solo, stub_models):
    ctx = solo

    def conductor_fn(messages):
        return (
            final_answer(document("pension fund liability matching"))
            if len(messages) > 2
            else "Hmm."
        )

    stub_models(conductor_fn)
    state = run_doc(graph, {"index": 0}, ctx)
    assert state["ended"] == "final" and state["protocol_errors"] == 1 and state["round"] == 2


def test_a_refused_conductor_request_goes_straight_to_the_fallback(ctx, stub_models):
    # The server answers 400 (the conversation outgrew its context): the fallback writes the
    # document, the record says why, and the rounds are the turns actually taken (not the cap).
    import httpx
    import openai

    def conductor_fn(messages):
        if len(messages) > 2:
            request = httpx.Request("POST", "http://stub/v1/chat/completions")
            raise openai.BadRequestError(
                "too long",
                response=httpx.Response(400, request=request),
                body={"code": "context_length_exceeded"},
            )
        return "Hmm."  # round 1: a protocol error, noted in the record

    conductor, _ = stub_models(conductor_fn, expert_echo)
    state = run_doc(graph, {"index": 0}, ctx)
    assert len(conductor.seen) == 2 and state["ended"] == "fallback"
    [record] = corpus(ctx)
    assert record["fallback_reason"] == "conductor request refused: context_length_exceeded"
    assert record["rounds"] == 1 and record["experts"] == [FALLBACK_NAME]
    assert record["protocol_notes"] == ["round 1: no expert call and no final answer"]
    assert record["usage"]["conductor"]["calls"] == 1 and record["usage"]["fallback"]["calls"] == 1


def seed_memory(ctx, text):
    memory = stub_memory(ctx)
    memory.admit(
        {"text": text, "summary": "An existing note on deposit insurance.", "category": "banking"},
        default_embedder().encode([text])[0],
        1.0,
    )
    return memory


def test_near_duplicate_is_sent_back_and_the_revision_is_accepted(solo, stub_models):
    ctx = solo
    existing = document("deposit insurance schemes")
    seed_memory(ctx, existing)

    def conductor_fn(messages):
        if "too close" in text_of(messages):
            return final_answer(
                document("catastrophe bonds for hurricane risk"), "Cat bonds.", "insurance"
            )
        return final_answer(existing, "Deposit insurance again.", "banking")

    conductor, _ = stub_models(conductor_fn)
    state = run_doc(graph, {"index": 0}, ctx)

    feedback = conductor.seen[1][-1].text
    assert feedback.startswith("ROUND 2: ") and "An existing note on deposit insurance." in feedback
    assert f"limit is {ctx.threshold:.2f}" in feedback
    assert state["ended"] == "final" and state["revisions"] == 1
    records = corpus(ctx)
    assert len(records) == 2 and records[1]["summary"] == "Cat bonds."
    assert records[1]["nearest_similarity"] < ctx.threshold


def test_draft_still_too_similar_past_the_budget_goes_to_rejects(solo, stub_models):
    ctx = solo
    existing = document("deposit insurance schemes")
    seed_memory(ctx, existing)
    conductor, _ = stub_models(lambda m: final_answer(existing))
    state = run_doc(graph, {"index": 0}, replace(ctx, max_revisions=2))

    assert len(conductor.seen) == 3  # the first draft and two revisions
    assert state["ended"] == "rejected"
    assert len(corpus(ctx)) == 1
    [reject] = [
        json.loads(line) for line in (run_dir(ctx) / "rejects.jsonl").read_text().splitlines()
    ]
    assert reject["reason"] == "too similar" and reject["nearest_similarity"] >= ctx.threshold
    assert reject["nearest_id"] == "finance-000000" and reject["revisions"] == 2
    # One record builder: a reject has every field a committed document has (but its id), and its
    # draft.
    fields = {
        "domain",
        "method",
        "text",
        "seeds",
        "summary",
        "category",
        "experts",
        "rounds",
        "protocol_errors",
        "ended",
        "model",
        "prompt_hash",
        "tokens",
        "created_at",
        "source",
        "brief",
        "reviews",
    }
    assert fields <= reject.keys() and reject["text"] == existing and reject["tokens"] > 0


def test_fallback_without_a_document_is_rejected_not_committed(ctx, stub_models):
    stub_models(lambda m: "no.", lambda m: "short")
    state = run_doc(graph, {"index": 0}, ctx)
    assert state["ended"] == "rejected" and corpus(ctx) == []
    reject = json.loads((run_dir(ctx) / "rejects.jsonl").read_text())
    assert reject["reason"] == "no document"


def test_given_seeds_are_used_and_recall_shows_prior_documents(solo, stub_models):
    ctx = solo
    seed_memory(ctx, document("deposit insurance schemes"))
    conductor, _ = stub_models(lambda m: final_answer(document("venture debt for startups")))
    run_doc(graph, {"seeds": ["venture debt", "warrants"]}, ctx)
    task = conductor.seen[0][1].text
    assert task.startswith("ROUND 1: ") and "keywords: venture debt, warrants" in task
    assert "- [banking] An existing note on deposit insurance." in task and "- banking: 1" in task


def test_topic_aware_mode_feeds_real_seed_documents(solo, stub_models, tmp_path):
    ctx = solo
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        "\n".join(
            json.dumps({"text": t})
            for t in [
                "Nokia's net sales rose 5 %.",
                "The statin cut LDL cholesterol.",
                "Oil prices fell.",
            ]
        )
    )
    conductor, _ = stub_models(lambda m: final_answer(document(m[1].text[-60:])))
    ctx = replace(ctx, seed_docs=str(seeds))
    for i in range(3):
        run_doc(graph, {"index": i}, ctx)
    shown = [c[1].text for c in conductor.seen if len(c) == 2]  # each document's first turn
    assert all("derive 3 to 5 keywords from this real document" in t for t in shown)
    used = [next(s for s in ["Nokia", "statin", "Oil"] if s in t) for t in shown]
    assert sorted(used) == ["Nokia", "Oil", "statin"]  # each seed once, none repeated


def test_a_final_answer_the_experts_did_not_write_is_refused_and_costs_a_round(ctx, stub_models):
    """The paper's conductor orchestrates experts who write: a final answer of its own is a protocol
    error that says what is missing; the document it then builds from its expert's draft counts."""

    def conductor_fn(messages):
        text = text_of(messages)
        if "Analyst's output" in text:
            return final_answer(relayed(messages, "Analyst"))
        if "not written by your experts" in messages[-1].text:
            keywords = re.search(r"keywords: ([^;\n]+)", text)[1]
            return f'Expert Analyst:\n"""\nWrite a bank note on {keywords}.\n"""'
        return final_answer(document("what the conductor wrote itself"))

    conductor, _ = stub_models(conductor_fn, expert_echo)
    state = run_doc(graph, {"index": 0}, ctx)
    refusal = conductor.seen[1][-1].text
    assert (
        refusal.startswith("ROUND 2: ")
        and "0% of it comes from their replies" in refusal
        and "at least 50%" in refusal
    )
    assert state["ended"] == "final" and state["protocol_errors"] == 1 and state["round"] == 3
    [record] = corpus(ctx)
    assert (
        record["written_by"] == "experts"
        and record["writer"] == "Analyst"
        and record["expert_share"] == 1.0
    )
    assert record["protocol_notes"] == [
        "round 1: final answer not written by the experts (0% of it from their replies)"
    ]


def test_a_conductor_that_only_writes_alone_ends_with_the_fallback(ctx, stub_models):
    stub_models(lambda m: final_answer(document("the conductor's own text")), expert_echo)
    state = run_doc(graph, {"index": 0}, ctx)
    assert state["ended"] == "fallback" and state["protocol_errors"] == ctx.max_protocol_errors
    assert corpus(ctx)[0]["written_by"] == "fallback"


def test_where_the_conductor_may_write_alone_the_record_says_so(solo, stub_models):
    stub_models(lambda m: final_answer(document("venture debt and warrants")))
    run_doc(graph, {"index": 0, "seeds": ["venture debt", "warrants"]}, solo)
    [record] = corpus(solo)
    assert (
        record["ended"] == "final"
        and record["written_by"] == "conductor"
        and record["expert_share"] == 0.0
    )


def test_protocol_success_counts_only_documents_written_through_the_experts():
    from graph.driver import Tally
    from graph.manifest import summarize
    from graph.session import Job

    tally = Tally(
        results=[
            {"ended": "final", "written_by": "experts"},
            {"ended": "final", "written_by": "conductor"},
            {"ended": "fallback", "written_by": "fallback"},
            {"ended": "rejected", "written_by": "experts"},
        ]
    )  # drafted, never committed

    class Memory(list):
        def tokens(self) -> int:
            return 0

    stats = summarize(tally, {"by_role": {}, "by_name": {}, "errors": {}}, Memory(), Job())
    assert stats["protocol_success_rate"] == 0.25
    assert stats["written_by"] == {"experts": 1, "conductor": 1, "fallback": 1}
