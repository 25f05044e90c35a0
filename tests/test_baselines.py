"""The template baselines: what each prompt holds, and that their corpora match MetaSynth's
schema."""

import json
import random
from dataclasses import replace

import pytest
from conftest import document, final_answer, relayed, run_doc

from graph.baselines.graph import template, template_icl, template_prior
from graph.documents.graph import graph
from graph.session import prompts_for, run_dir


def corpus(ctx):
    path = run_dir(ctx) / "corpus.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def by_keywords(messages):
    """A document whose content follows the keywords in the prompt's last line."""
    last = [line for line in messages[-1].text.splitlines() if "words about:" in line][-1]
    return document(last.split("words about:")[1])


def test_template_prompt_fills_the_same_keywords_metasynth_would_draw(ctx, stub_models):
    _, writer = stub_models(lambda m: "unused", by_keywords)
    state = run_doc(template, {"index": 3}, ctx)
    expected = prompts_for(ctx).domain.sample_seeds(ctx.keywords, random.Random(f"{ctx.seed}:3"))[
        "seeds"
    ]
    assert state["seeds"] == expected
    prompt = writer.seen[0]
    # one user turn, no system prompt
    assert len(prompt) == 1 and ", ".join(expected) in prompt[0].text
    [record] = corpus(ctx)
    assert record["method"] == "template" and record["ended"] == "final" and record["experts"] == []


def test_baseline_records_have_the_metasynth_schema(ctx, stub_models):
    def conductor_fn(messages):  # consults one expert, then answers with its text
        if "Writer's output" in "\n".join(m.text for m in messages):
            return final_answer(relayed(messages, "Writer"))
        return 'Expert Writer:\n"""\nWrite a note on bond ladders.\n"""'

    def writer_fn(messages):
        asked = messages[-1].text
        return by_keywords(messages) if "words about:" in asked else document("bond ladders")

    stub_models(conductor_fn, writer_fn)
    run_doc(graph, {"index": 0}, ctx)
    run_doc(template, {"index": 1}, ctx)
    meta, base = corpus(ctx)
    assert set(meta) == set(base)
    assert (meta["method"], base["method"]) == ("metasynth", "template")


def test_template_prior_shows_the_most_recent_documents(ctx, stub_models):
    ctx = replace(ctx, recall_k=2)
    _, writer = stub_models(lambda m: "unused", by_keywords)
    for i in range(4):
        run_doc(template_prior, {"index": i}, ctx)
    texts = [r["text"] for r in corpus(ctx)]
    assert "most recent documents" not in writer.seen[0][0].text  # nothing to show yet
    last_prompt = writer.seen[3][0].text
    assert "most recent documents" in last_prompt
    assert (
        texts[1][:200] in last_prompt
        and texts[2][:200] in last_prompt
        and texts[0][:200] not in last_prompt
    )
    assert {r["method"] for r in corpus(ctx)} == {"template-prior"}


def test_template_icl_shows_real_documents_drawn_per_index(ctx, stub_models, tmp_path):
    seeds = tmp_path / "real.jsonl"
    real = [
        f"Real filing number {i} reports quarterly revenue of EUR {i} million." for i in range(20)
    ]
    seeds.write_text("".join(json.dumps({"text": t}) + "\n" for t in real))
    ctx = replace(ctx, seed_docs=str(seeds), recall_k=3)
    _, writer = stub_models(lambda m: "unused", by_keywords)
    first = run_doc(template_icl, {"index": 0}, ctx)["shown"]
    again = run_doc(template_icl, {"index": 0}, replace(ctx, out_dir=str(tmp_path / "other")))[
        "shown"
    ]
    second = run_doc(template_icl, {"index": 1}, ctx)["shown"]
    assert first == again and first != second and len(first) == 3 and set(first) <= set(real)
    assert all(t in writer.seen[0][0].text for t in first)
    assert corpus(ctx)[0]["method"] == "template-icl"


def test_template_icl_without_examples_fails_clearly(ctx, stub_models):
    stub_models(lambda m: "unused", by_keywords)
    with pytest.raises(ValueError, match="seed_docs"):
        run_doc(template_icl, {"index": 0}, ctx)


def test_baselines_have_no_novelty_gate_but_record_the_similarity(ctx, stub_models):
    stub_models(lambda m: "unused", lambda m: document("the same money market fund"))
    for i in range(2):
        run_doc(template, {"index": i}, ctx)
    first, second = corpus(ctx)
    assert first["nearest_similarity"] is None and second["nearest_similarity"] > 0.99


def test_an_unusable_reply_is_rejected_not_committed(ctx, stub_models):
    stub_models(lambda m: "unused", lambda m: "Sure!")
    state = run_doc(template, {"index": 0}, ctx)
    assert state["ended"] == "rejected" and corpus(ctx) == []
    rejects = (run_dir(ctx) / "rejects.jsonl").read_text().splitlines()
    assert json.loads(rejects[0])["reason"] == "no document"
    assert (
        json.loads(rejects[0])["text"] == "Sure!" and json.loads(rejects[0])["method"] == "template"
    )
