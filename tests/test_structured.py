"""The structured protocol (graph/documents/structured.py) with chat models stubbed at the model
boundary."""

import json
import random
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import document, run_doc, stub_memory

from agents.protocol import BriefError, parse_brief, parse_review
from graph.documents.graph import graph
from graph.session import prompts_for, run_dir
from graph.settings import DocumentSettings
from graph.steps import least_covered

OPTIONS = {
    "category": ["banking", "fixed income"],
    "genre": ["FAQ", "case study"],
    "audience": ["retirees", "MBA students"],
}


def text_of(messages):
    return "\n".join(m.text for m in messages)


def corpus(ctx):
    path = run_dir(ctx) / "corpus.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def offered(messages, label):
    return re.search(rf"^{label}: (.+)$", text_of(messages), re.MULTILINE)[1].split("; ")


def brief_from_offer(messages, angle=None):
    """A conductor that takes the last option offered for each field and an angle on the seed."""
    seed = re.search(r"Keywords: (.+)", text_of(messages))[1]
    return (
        f"Category: {offered(messages, 'Categories')[-1]}\n"
        f"Genre: {offered(messages, 'Genres')[-1]}\n"
        f"Audience: {offered(messages, 'Audiences')[-1]}\nAngle: "
        f"{angle or seed + ' changes lending decisions.'}\nExpert: Credit Risk Officer\n"
    )


def topic_of(instruction: str) -> str:
    """The writer's subject: its keywords and angle (the rest of the instruction is the task)."""
    lines = instruction.split("\n")
    return f"{lines[0].split('about: ')[-1]} {lines[1] if len(lines) > 1 else ''}".strip()


def expert_fn(messages):
    """Writers get a document on their instruction; the reviewer keeps every draft."""
    if "Verdict:" in messages[-1].text:
        return "Verdict: keep\nFix: Nothing to fix."
    return document(topic_of(messages[-1].text))


RECALL_VARIANT = str(Path(__file__).parent.parent / "docs" / "variants" / "recall")


@pytest.fixture
def sctx(ctx):
    return replace(ctx, protocol="structured", reviews=1)


def test_brief_write_review_commit_and_the_record_shows_every_choice(sctx, stub_models):
    conductor, expert = stub_models(brief_from_offer, expert_fn)
    state = run_doc(graph, {"index": 0}, sctx)

    assert state["ended"] == "final" and state["protocol_errors"] == 0 and state["round"] == 1
    [record] = corpus(sctx)
    brief = record["brief"]
    assert record["protocol"] == "structured" and record["ended"] == "final"
    assert brief["expert"] == "Credit Risk Officer" and "entity" not in brief
    assert record["category"] == brief["category"] and record["genre"] == brief["genre"]
    assert record["audience"] == brief["audience"]
    assert record["experts"] == ["Credit Risk Officer", "Reviewer"]
    assert record["reviews"] == [{"verdict": "keep", "fix": "Nothing to fix."}]
    assert record["summary"] == f"{brief['genre']} for {brief['audience']}: {brief['angle']}"
    domain = prompts_for(sctx).domain
    assert brief["category"] in domain.categories and brief["genre"] in domain.genres

    # The grammar sent with the brief admits exactly the options offered in the prompt.
    grammar = conductor.extra[0]["grammar"]
    for label, rule in (("Categories", "category"), ("Genres", "genre"), ("Audiences", "audience")):
        line = re.search(rf"^{rule} ::= (.+)$", grammar, re.MULTILINE)[1]
        assert sorted(json.loads(f"[{line.replace(' | ', ',')}]")) == sorted(
            offered(conductor.seen[0], label)
        )
    # the per-call extra_body keeps the client's fields
    assert conductor.extra[0]["max_tokens"] == 64
    # The writer is not constrained; the reviewer answers through the review grammar.
    assert expert.extra[0] is None and expert.extra[1]["grammar"].startswith("# The reviewer")


def test_the_default_conductor_sees_coverage_and_the_writer_starts_from_the_keywords(
    sctx, stub_models
):
    """The default (chosen on five seeds, docs/metrics.md): the memory reaches the conductor as
    coverage counts and least-covered options, not as earlier documents; the writer starts from the
    keywords."""
    conductor, expert = stub_models(brief_from_offer, expert_fn)
    ctx = replace(sctx, reviews=DocumentSettings().reviews)
    for i in range(2):
        run_doc(graph, {"index": i}, ctx)
    first, second = corpus(ctx)
    brief = text_of(conductor.seen[-1])
    # coverage of the first
    assert "The corpus holds 1 documents" in brief and first["genre"] in brief
    assert first["summary"] not in brief and "Nearest earlier" not in brief
    instruction = expert.seen[-1][-1].text
    assert re.search(r"^You are Credit Risk Officer\. Write a finance .+ about: ", instruction)
    assert ", ".join(second["seeds"]) in instruction
    assert len(expert.seen) == 2 and second["reviews"] == []  # no review by default


def test_experts_never_see_prior_documents_only_the_conductor_does(sctx, stub_models):
    """With the recall variant's prompts (the default until 2026-12-01), the conductor is also shown
    the nearest earlier documents; the experts still see none."""
    conductor, expert = stub_models(brief_from_offer, expert_fn)
    sctx = replace(sctx, prompts_dir=RECALL_VARIANT)
    for i in range(3):
        run_doc(graph, {"index": i}, sctx)
    records = corpus(sctx)
    assert len(records) == 3

    # The conductor's memory view: the third brief's prompt recalls the first two documents'
    # summaries.
    third = text_of(conductor.seen[-1])
    assert records[0]["summary"] in third and records[1]["summary"] in third
    # No expert conversation (writer or reviewer) holds any other document's text or summary.
    assert expert.seen and all(len(c) == 2 for c in expert.seen)
    for conversation in expert.seen:
        seen = text_of(conversation)
        others = [r for r in records if r["text"] not in seen]  # a reviewer sees its own draft
        assert len(others) >= len(records) - 1
        for r in others:
            assert r["summary"] not in seen
        assert "corpus holds" not in seen and "Nearest earlier" not in seen


def test_the_memory_offers_the_least_covered_options(sctx, stub_models):
    memory = stub_memory(sctx)
    from memory.embedder import default_embedder

    domain = prompts_for(sctx).domain
    for i, genre in enumerate(domain.genres[:-1]):  # every genre but the last is used once already
        text = document(f"existing document {i}")
        memory.admit(
            {"text": text, "summary": "s", "category": "banking", "genre": genre},
            default_embedder().encode([text])[0],
            1.0,
        )
    conductor, _ = stub_models(brief_from_offer, expert_fn)
    run_doc(graph, {"index": 0}, replace(sctx, choices=3))
    genres = offered(conductor.seen[0], "Genres")
    # the only unused genre is always offered
    assert len(genres) == 3 and domain.genres[-1] in genres
    assert "banking" not in offered(conductor.seen[0], "Categories")
    assert "genres: " in text_of(conductor.seen[0])


def test_an_unusable_brief_is_explained_then_the_next_is_used(sctx, stub_models):
    def conductor_fn(messages):
        if len(messages) == 2:
            return (
                "Category: astrology\nGenre: FAQ\nAudience: retirees\nExpert: Writer Person\n"
                "Angle: Something long enough here."
            )
        return brief_from_offer(messages)

    conductor, _ = stub_models(conductor_fn, expert_fn)
    state = run_doc(graph, {"index": 0}, sctx)
    assert state["ended"] == "final" and state["protocol_errors"] == 1 and state["round"] == 2
    assert "'astrology' is not one of the options offered" in conductor.seen[1][-1].text


def test_a_conductor_that_never_keeps_the_protocol_gets_the_fresh_eyed_fallback(sctx, stub_models):
    def fallback_writer(messages):  # on the seed's keywords (its genre and audience are brief)
        return document(re.search(r"keywords: ([^;\n]+)", messages[-1].text)[1])

    conductor, expert = stub_models(lambda m: "I would write about banks.", fallback_writer)
    run_doc(graph, {"index": 0}, sctx)  # an earlier document in the corpus
    state = run_doc(graph, {"index": 1}, sctx)
    assert (
        len(conductor.seen) == 6
        and state["ended"] == "fallback"
        and state["fallback_reason"] == "protocol errors"
    )
    first = corpus(sctx)[0]
    fallback_prompt = text_of(expert.seen[-1])
    assert first["summary"] not in fallback_prompt and first["text"][:80] not in fallback_prompt


def test_a_revise_verdict_gets_one_rewrite_with_the_fix(sctx, stub_models):
    def experts(messages):
        last = messages[-1].text
        if "Verdict:" in last:
            return "Verdict: revise\nFix: Name the bank's 2023 results."
        if "applying this fix" in last:
            return document("the bank and its 2023 results")
        return document("a regional lender in its first year")

    _, expert = stub_models(brief_from_offer, experts)
    state = run_doc(graph, {"index": 0}, sctx)
    [record] = corpus(sctx)
    assert record["reviews"] == [{"verdict": "revise", "fix": "Name the bank's 2023 results."}]
    assert "its 2023 results" in record["text"] and state["ended"] == "final"
    assert record["experts"] == ["Credit Risk Officer", "Reviewer", "Credit Risk Officer"]
    rewrite_prompt = expert.seen[2][-1].text
    assert "Name the bank's 2023 results." in rewrite_prompt
    assert "a regional lender in its first year" in rewrite_prompt
    assert len(expert.seen) == 3  # one review, one rewrite: bounded


def test_reviews_zero_skips_review(sctx, stub_models):
    _, expert = stub_models(brief_from_offer, expert_fn)
    run_doc(graph, {"index": 0}, replace(sctx, reviews=0))
    assert len(expert.seen) == 1 and corpus(sctx)[0]["reviews"] == []


def test_a_too_similar_draft_sends_the_conductor_back_for_a_new_brief(sctx, stub_models):
    stub_models(
        brief_from_offer,
        lambda m: "Verdict: keep\nFix: ok" if "Verdict:" in m[-1].text else document("same text"),
    )
    first = run_doc(graph, {"index": 0}, sctx)

    def conductor_fn(messages):
        if "too close" in text_of(messages):  # the new angle is what reaches the writer
            seed = re.search(r"Keywords: (.+)", text_of(messages))[1]
            return brief_from_offer(messages, angle=f"{seed} as Other Bank saw it.")
        return brief_from_offer(messages)

    def experts(messages):
        if "Verdict:" in messages[-1].text:
            return "Verdict: keep\nFix: ok"
        return (
            document("a different story about Other Bank")
            if "Other Bank" in messages[-1].text
            else document("same text")
        )

    conductor, _ = stub_models(conductor_fn, experts)
    # the same topic, the same text
    state = run_doc(graph, {"index": 1, "seeds": first["seeds"]}, sctx)
    assert state["ended"] == "final" and state["revisions"] == 1
    assert (
        "too close" in conductor.seen[1][-1].text
        and "Other Bank" in corpus(sctx)[1]["brief"]["angle"]
    )


def test_parse_brief_accepts_options_case_insensitively_and_refuses_the_rest():
    reply = (
        "Category: Banking\nGenre: faq\nAudience: retirees\nExpert: Pension Adviser\n"
        "Angle: Why the funding gap widened in 2022.\n"
    )
    brief = parse_brief(reply, OPTIONS)
    assert (brief.category, brief.genre, brief.expert) == ("banking", "FAQ", "Pension Adviser")
    with pytest.raises(BriefError, match="missing line"):
        parse_brief("Category: banking\nGenre: FAQ", OPTIONS)
    with pytest.raises(BriefError, match="job title"):
        parse_brief(reply.replace("Pension Adviser", "a pension adviser"), OPTIONS)
    with pytest.raises(BriefError, match="not one of the options"):
        parse_brief(reply.replace("retirees", "children"), OPTIONS)
    assert parse_brief(reply.replace("retirees", "children"), {}).audience == "children"


def test_parse_review():
    assert parse_review("Verdict: revise\nFix: Add numbers.").keep is False
    assert parse_review("Verdict: keep\nFix: none").keep is True
    assert parse_review("no idea").keep is True  # a reviewer that cannot answer costs no rewrite


def test_least_covered_prefers_unused_values_and_is_seeded():
    values = ["a", "b", "c", "d"]
    counts = Counter({"a": 3, "b": 1})
    assert sorted(least_covered(values, counts, 2, random.Random(0))) == ["c", "d"]
    assert least_covered(values, counts, 3, random.Random(1))[-1] == "b"
    assert least_covered(values, counts, 4, random.Random(5)) == least_covered(
        values, counts, 4, random.Random(5)
    )
