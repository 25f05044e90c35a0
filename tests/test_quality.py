"""The quality gate: each rule on constructed texts, agreement with datatrove's Gopher filter, and
the routing of a refused draft (back to its writer, then rejects.jsonl)."""

import json
import random
from dataclasses import replace

import numpy as np
import pytest
from conftest import document, final_answer, real_data, run_doc

from graph.baselines.graph import template
from graph.documents.graph import graph
from memory import quality
from memory.embedder import default_embedder

PROSE = (
    "Regional lenders spent the spring repricing their deposit books. Treasurers at three "
    "mid-sized banks said the move followed the central bank's decision to hold rates, which left "
    "savers comparing offers across the market. One chief financial officer described the quarter "
    "as a test of loyalty: customers who had not moved money in a decade asked for better terms. "
    "Analysts expect net interest margins to narrow by a few basis points before the summer, "
    "while fee income from payments and wealth management should cushion part of the decline."
)
LOOP = "The bank raised its rates to attract savers. " * 12
INVENTED = " ".join(
    "xeno" + "".join(random.Random(i).choices("abcdefghilmnoprstu", k=12)) for i in range(60)
)
SPANISH = (
    "La investigación sobre aplicaciones clínicas en una base de datos hospitalaria cambió "
    "durante varios años por errores técnicos. Los médicos habían tratado pacientes con "
    "enfermedades neurológicas raras, y cada equipo registraba resultados distintos según "
    "criterios propios. Ahora proponen normas comunes para medir respuestas al tratamiento, "
    "compartir muestras entre centros regionales y publicar informes trimestrales abiertos."
)
W = "about_the_writing"
INSTRUCTION = (
    "You are Credit Analyst. Write a finance op-ed of 300 to 600 words for retail investors about: "
    "deposit betas, net interest margin.\nWrite only the document itself: no preamble, no notes, "
    "no mention of these instructions."
)


def test_a_plain_document_passes_every_rule():
    checked = quality.check(
        PROSE, INSTRUCTION, topic_similarity=0.5, values=["deposit betas", "net interest margin"]
    )
    assert checked.passed and checked.figures["words"] >= quality.MIN_WORDS
    assert (
        checked.figures["gopher"]["top_2_gram"] < 0.2 and checked.figures["topic_similarity"] == 0.5
    )


@pytest.mark.parametrize(
    "text, rule, detail",
    [
        (LOOP, "repetition", "top_3_gram"),
        # strings of invented words that never repeat (like a SmolLM2 biomedicine document that
        # passed the other rules, 2026-12-05)
        (INVENTED, "not_prose", "above_avg_threshold"),
        # another language (Gopher's stop words are English)
        (SPANISH, "not_prose", "enough_stop_words"),
        ("Net interest margins narrowed again this quarter, the bank said.", "length", None),
        ("Here is the document you asked for:\n\n" + PROSE, "task_text", "preamble"),
        (PROSE + " Contact [Your Name] at [Company Name] for details.", "task_text", "placeholder"),
        ("Genre: op-ed\nAudience: retail investors\n\n" + PROSE, "task_text", "brief_field"),
        (PROSE + " Here's the formatted document: see above.", "task_text", "about_itself"),
        (
            "Aiming for a bio edit I will write about single cell RNA sequencing. " + PROSE,
            "task_text",
            "about_itself",
        ),
        # read in committed SmolLM2 documents, 2026-12-05
        ("Dear [Investor's Name],\n\n" + PROSE, "task_text", "placeholder"),
        (
            "I'm here to help you craft a finance glossary entry. " + PROSE,
            "task_text",
            "about_itself",
        ),
        (
            "The question was to write a research note of 300 words on fair value. " + PROSE,
            "task_text",
            "instructions",
        ),
        # the task's seed line echoed (Qwen2.5-Coder-1.5B's fallback writer, 2026-12-02)
        ("# Seed: Keywords: Bid-Ask Spread, Bank Run\n\n" + PROSE, "task_text", "brief_field"),
        (
            PROSE + " This op-ed is 300 to 600 words long, as requested.",
            "task_text",
            "instructions",
        ),
        (
            PROSE
            + " Write only the document itself: no preamble, no notes, no mention of the brief.",
            "task_text",
            "echo",
        ),
        # what blind readers marked as chatter in committed documents (2026-12-06)
        (PROSE + " The text continues with the benefits of this research.", "task_text", W),
        ("The task at hand was to create a document on orphan drugs. " + PROSE, "task_text", W),
        ("Here's your feedback:\n\n" + PROSE, "task_text", W),
        (PROSE + " You've kept the focus with its first sentence.", "task_text", W),
        (PROSE + "\n\nEND OF THE POST", "task_text", W),
        (PROSE + " This task has been taken over by SmolLM on his own.", "task_text", W),
    ],
)
def test_each_rule_flags_its_own_failure(text, rule, detail):
    checked = quality.check(text, INSTRUCTION)
    assert checked.rule == rule, checked.figures
    if rule in ("repetition", "not_prose"):
        assert checked.figures[rule] == detail
    elif rule == "task_text":
        assert detail in checked.figures["task_text"]


def test_keywords_and_values_copied_from_the_instruction_are_not_an_echo():
    text = (
        PROSE
        + " Deposit betas, net interest margin and retail investors are the subject here today."
    )
    assert "echo" not in quality.task_text(
        text, INSTRUCTION, ["deposit betas, net interest margin", "retail investors"]
    )


def test_off_topic_below_the_calibrated_threshold_only():
    assert quality.check(PROSE, topic_similarity=quality.TOPIC_THRESHOLD - 0.01).rule == "off_topic"
    assert quality.check(PROSE, topic_similarity=quality.TOPIC_THRESHOLD).passed
    assert quality.check(PROSE).figures["topic_similarity"] is None  # no keywords: not checked


# sentences of committed SmolLM2 documents (2026-12-05) that no pattern catches, read as chatter
TALK = [
    "I have prepared this excerpt with all necessary information as per your request.",
    "This text needs editing before it goes out.",
    "Please refer to the document for more details including detailed information about this "
    "topic.",
]


@pytest.fixture(scope="module")
def talk():
    return quality.Talk(default_embedder())


@pytest.mark.parametrize("said", TALK)
def test_a_sentence_about_the_task_or_the_output_is_task_text(said, talk):
    text = PROSE + "\n\n" + said
    assert quality.task_text(text) == []  # no pattern sees it
    talked = talk(text)
    checked = quality.check(text, talked=talked)
    assert checked.rule == "task_text" and checked.figures["task_text"] == ["talk"]
    assert checked.figures["talk"] == {"score": round(talked[0], 4), "sentence": said}


def test_domain_sentences_are_not_talk(talk):
    talked = talk(PROSE)
    assert talked[0] < quality.TALK_THRESHOLD
    assert quality.check(PROSE, talked=talked).passed
    assert talk("Too short.") == (float("-inf"), "")  # no sentence to score
    assert quality.check("Too short.", talked=talk("Too short.")).figures["talk"]["score"] is None
    assert quality.check(PROSE).figures["talk"] is None  # not checked without an embedder


def test_sentences_split_on_ends_and_lines_and_skip_fragments():
    text = "Rates rose again today. Why? Savers moved money fast!\nA new line starts here\n- item"
    assert quality.sentences(text) == [
        "Rates rose again today.",
        "Savers moved money fast!",
        "A new line starts here",
    ]


def test_the_repetition_verdict_is_datatroves():
    from datatrove.data import Document
    from datatrove.pipeline.filters import GopherRepetitionFilter

    gopher = GopherRepetitionFilter()
    texts = [
        PROSE,
        LOOP,
        PROSE + "\n\n" + PROSE,
        "\n".join([PROSE] * 2 + ["A different closing line."]),
        document("bond ladders"),
        " ".join(f"Clause {i} of the covenant binds the borrower." for i in range(20)),
    ]
    for text in texts:
        verdict = gopher.filter(Document(text=text, id="t"))
        assert quality.check(text).figures["repetition"] == (
            None
            if verdict is True
            else verdict[1].replace("duplicated_", "dup_").replace("_n_grams", "_gram")
        )


@pytest.mark.parametrize(
    "sentence",
    [
        "End of life care should begin early.",
        "Participants performed a Stroop test; the task was repeated twice.",
        "This task force will report to the FSB.",
        "The prompt diagnosis of sepsis saves lives.",
        "A previous attempt to quit smoking failed; he succeeded on the first attempt.",
        "The first draft of the Basel IV rules was published.",
        "The gene was edited with CRISPR.",
        "This document contains forward-looking statements. The document was filed with the SEC.",
        "As requested by the regulator, the bank filed. If you requested a paper statement, call.",
        "The first sentence of Article 5 applies.",
    ],
)
def test_domain_prose_near_the_writing_phrases_is_not_task_text(sentence):
    assert quality.task_text(PROSE + " " + sentence) == []


def test_a_text_naming_its_writers_persona_is_task_text():
    named = "John Doe Clinician, a renowned regulatory firm, reports on the audit.\n\n" + PROSE
    assert quality.task_text(named, personas=["John Doe Clinician"]) == ["persona"]
    assert "persona" in quality.task_text(named.lower(), personas=["John Doe Clinician"])
    assert quality.task_text(named, personas=["Jane Roe Banker", ""]) == []
    # one-word roles are ordinary words ("an Economist said"); a name inside a word is no name
    assert quality.task_text(PROSE + " An Economist agreed.", personas=["Economist"]) == []
    assert quality.task_text("Credit Analysts agree. " + PROSE, personas=["Credit Analyst"]) == []


def test_no_real_document_reads_as_task_text():
    """The task-text patterns against every real document here: 500 PubMedQA abstracts, 2,431
    FPB sentences (a pattern that flagged real text would refuse writers for writing well)."""
    abstracts = [
        json.loads(line)["contexts"]
        for line in real_data("biomed/pubmedqa_pqal.jsonl").read_text().splitlines()
    ]
    sentences = [
        json.loads(line)["text"] for line in real_data("finance/fpb.jsonl").read_text().splitlines()
    ]
    texts = ["\n\n".join(contexts) for contexts in abstracts] + sentences
    assert len(texts) == 2931
    assert [t[:80] for t in texts if quality.task_text(t)] == []


def test_a_real_abstract_passes(talk):
    path = real_data("biomed/pubmedqa_pqal.jsonl")
    text = "\n\n".join(json.loads(path.read_text().splitlines()[0])["contexts"])
    assert quality.check(text, talked=talk(text)).passed


# -- routing ---------------------------------------------------------------------------------------
def brief(messages):
    import re

    text = "\n".join(m.text for m in messages)
    offered = {
        k: re.search(rf"^{k}: ([^;\n]+)", text, re.MULTILINE)[1]
        for k in ("Categories", "Genres", "Audiences")
    }
    seed = re.search(r"Keywords: (.+)", text)[1]
    return (
        f"Category: {offered['Categories']}\nGenre: {offered['Genres']}\n"
        f"Audience: {offered['Audiences']}\n"
        f"Angle: {seed} in one bank's quarter.\nExpert: Credit Analyst\n"
    )


def on_keywords(messages) -> str:
    return document(messages[-1].text.split("about: ")[-1].split("\n")[0])


NOTE = "benchmarks/writer-prompts/note-2026-12-06"  # the gate's note to the writer until then


def test_a_looping_draft_goes_back_to_its_writer_with_what_to_fix(ctx, stub_models):
    """With a note in the prompt files, the writer is told what its draft failed."""
    sctx = replace(ctx, protocol="structured", reviews=0, prompts_dir=NOTE)
    _, expert = stub_models(
        brief, lambda m: on_keywords(m) if "was not used" in m[-1].text else LOOP
    )
    state = run_doc(graph, {"index": 0}, sctx)
    assert state["ended"] == "final" and state["revisions"] == 1
    retry = expert.seen[1][-1].text
    assert (
        retry.startswith(expert.seen[0][-1].text)
        and "repeated itself" in retry
        and LOOP not in retry
    )
    record = json.loads((sctx_path(sctx) / "corpus.jsonl").read_text())
    assert record["sent_back"] == [{"reason": "low quality", "rule": "repetition"}]
    assert record["quality"]["flags"] == [] and record["quality"]["words"] >= quality.MIN_WORDS


def test_by_default_a_refused_draft_goes_back_to_its_writer_asked_the_same(ctx, stub_models):
    """The shipped note is blank: the refused draft still goes back to its writer, not to the
    conductor for a new brief, and the writer is asked its instruction again, word for word (a
    fresh sample)."""
    sctx = replace(ctx, protocol="structured", reviews=0)
    drafts = iter([LOOP])
    conductor, expert = stub_models(brief, lambda m: next(drafts, None) or on_keywords(m))
    state = run_doc(graph, {"index": 0}, sctx)
    assert state["ended"] == "final" and state["revisions"] == 1
    assert len(conductor.seen) == 1 and len(expert.seen) == 2
    assert expert.seen[1][-1].text == expert.seen[0][-1].text
    record = json.loads((sctx_path(sctx) / "corpus.jsonl").read_text())
    assert record["sent_back"] == [{"reason": "low quality", "rule": "repetition"}]


def test_a_draft_that_names_its_writer_goes_back(ctx, stub_models):
    """The expert named in the brief ("Credit Analyst") introducing itself in the text: sent back
    as task text (`persona`); its rewrite without the name is committed."""
    sctx = replace(ctx, protocol="structured", reviews=0)
    signed = "As a Credit Analyst, I am pleased to share this note.\n\n"
    drafts = iter([signed + PROSE])
    _, expert = stub_models(brief, lambda m: next(drafts, None) or on_keywords(m))
    state = run_doc(graph, {"index": 0}, sctx)
    assert state["ended"] == "final" and state["revisions"] == 1
    record = json.loads((sctx_path(sctx) / "corpus.jsonl").read_text())
    assert record["sent_back"] == [{"reason": "low quality", "rule": "task_text"}]
    assert "Credit Analyst" not in record["text"] and "Credit Analyst" in record["experts"]


def test_a_writer_that_keeps_looping_is_rejected_with_the_rule(ctx, stub_models):
    sctx = replace(ctx, protocol="structured", reviews=0, max_revisions=2)
    _, expert = stub_models(brief, lambda m: LOOP)
    state = run_doc(graph, {"index": 0}, sctx)
    assert state["ended"] == "rejected" and len(expert.seen) == 3  # the draft and two retries
    [reject] = [
        json.loads(line) for line in (sctx_path(sctx) / "rejects.jsonl").read_text().splitlines()
    ]
    assert reject["reason"] == "low quality" and reject["rule"] == "repetition"
    assert reject["quality"]["repetition"] == "top_3_gram" and len(reject["sent_back"]) == 3
    assert not (sctx_path(sctx) / "corpus.jsonl").exists()


def test_the_text_protocol_conductor_is_told_what_the_gate_found(ctx, stub_models):
    def conductor(messages):
        told = "quality check sent that document back" in messages[-1].text
        return final_answer(document("deposit betas at regional banks") if told else LOOP)

    seen, _ = stub_models(conductor)
    # the conductor may write alone here
    alone = replace(ctx, protocol="text", min_expert_share=0.0)
    state = run_doc(graph, {"index": 0, "seeds": ["deposit betas", "regional banks"]}, alone)
    assert state["ended"] == "final" and state["sent_back"] == [
        {"reason": "low quality", "rule": "repetition"}
    ]
    assert "repeated itself" in seen.seen[1][-1].text


def test_the_baselines_pass_the_same_gate(ctx, stub_models):
    drafts = iter([LOOP])  # the shipped prompts: the retry is asked exactly what the draft was
    _, writer = stub_models(lambda m: "unused", lambda m: next(drafts, None) or on_keywords(m))
    state = run_doc(template, {"index": 0}, ctx)
    assert state["ended"] == "final" and writer.seen[1][-1].text == writer.seen[0][-1].text
    ctx = replace(ctx, prompts_dir=NOTE, out_dir=ctx.out_dir + "-note")  # with the note
    _, writer = stub_models(
        lambda m: "unused", lambda m: on_keywords(m) if "was not used" in m[-1].text else LOOP
    )
    state = run_doc(template, {"index": 0}, ctx)
    assert state["ended"] == "final" and state["revisions"] == 1 and len(writer.seen) == 2
    # a fresh conversation
    assert "repeated itself" in writer.seen[1][-1].text and len(writer.seen[1]) == 1
    _, writer = stub_models(lambda m: "unused", lambda m: LOOP)
    state = run_doc(template, {"index": 1}, ctx)
    assert state["ended"] == "rejected" and state["result"]["reason"] == "low quality"


def test_with_the_gate_off_figures_are_recorded_and_nothing_is_refused(ctx, stub_models):
    stub_models(brief, lambda m: LOOP)
    state = run_doc(graph, {"index": 0}, replace(ctx, protocol="structured", quality_gate="off"))
    # one sentence again and again: it loops, and its only stop word in lower case is "to"
    # (datatrove counts stop words as written: "The" is not "the")
    flags = state["result"]["quality"]["flags"]
    assert state["ended"] == "final" and flags == ["repetition", "not_prose"]


def sctx_path(ctx):
    from pathlib import Path

    return Path(ctx.out_dir)


def test_checks_from_many_threads_agree_with_one_thread():
    """The gate runs off the event loop, several documents at once: the tokenizer is shared."""
    from concurrent.futures import ThreadPoolExecutor

    texts = [PROSE, LOOP, document("bond ladders"), document("venture debt")] * 4
    alone = [quality.check(t).as_record() for t in texts]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda t: quality.check(t).as_record(), texts)) == alone


def test_the_writer_prompts_benchmark_retries_a_refused_draft_with_the_variants_note(talk):
    """benchmarks.writer_prompts: a first draft about the task is refused; its retry is asked with
    the variant's own quality note and checked, as the pipeline does, against the instruction."""
    import asyncio

    from langchain_core.messages import AIMessage

    from agents.prompts import load_prompts
    from benchmarks import writer_prompts as bench

    asked = []

    class Writer:  # the writer's router, keyed on what it is asked
        async def call(self, messages, role):
            asked.append(messages[-1].content)
            if "not used" in messages[-1].content:  # the positive variant's quality note
                return AIMessage(PROSE)
            return AIMessage(PROSE + "\n\nI hope this document meets your requirements.")

    prompts = {"finance": load_prompts("finance", "benchmarks/writer-prompts/positive")}
    rows = asyncio.run(bench.variant_rows("positive", prompts, Writer(), talk, 2))
    assert [r["stage"] for r in rows] == ["first", "first", "retry", "retry"]
    assert all("talk" in r["task_text"] for r in rows[:2])
    assert all(not r["task_text"] for r in rows[2:])
    assert asked[2].startswith(asked[0]) and "Your previous attempt was not used" in asked[2]
    assert "spoke to the reader about the writing" in asked[2]  # the variant's own fragment
    fixed = sum(not r["flags"] for r in rows[2:])  # the retries may still miss their keywords
    assert "flagged 2/2 100%" in bench.summary("positive", rows)
    assert f"done within one retry {fixed}/2" in bench.summary("positive", rows)
    asked.clear()  # the shipped prompts: no note, the retry is the instruction again
    shipped = {"finance": load_prompts("finance")}
    asyncio.run(bench.variant_rows("shipped", shipped, Writer(), talk, 2))
    assert asked[2] == asked[0] and asked[3] == asked[1]


# -- blind reading (benchmarks/blind_read.py) ------------------------------------------------------
def test_blind_reading_hides_the_corpus_and_counts_each_corpus_by_its_readers(tmp_path, capsys):
    from benchmarks import blind_read
    from core.errors import exit_code

    corpora = {"alphaset": 4, "betaset": 3}
    for name, n in corpora.items():
        lines = [json.dumps({"id": f"{name}-{i}", "text": f"Text number {i}."}) for i in range(n)]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    flags = [f"{name}={tmp_path / name}.jsonl" for name in corpora]
    out = tmp_path / "pack"
    assert blind_read.main(["pack", *flags, "--parts", "3", "--out", str(out)]) == 0
    parts = [p.read_text() for p in sorted((out / "readers").glob("part-*.txt"))]
    assert [p.count("=====\n") for p in parts] == [3, 2, 2]  # 7 documents, sizes within one
    assert not any(name in "".join(parts) for name in corpora)  # neither corpus nor id shown
    key = json.loads((out / "key.json").read_text())
    assert sorted(map(tuple, key.values())) == sorted(
        (name, f"{name}-{i}") for name, n in corpora.items() for i in range(n)
    )

    # readers: chatter in alphaset-0 and alphaset-1 only; a second pack of alphaset read again
    def answer(key, chatter, headers=None):
        return "\n".join(
            f"{h} | chatter={'yes' if chatter(key[h]) else 'no'} | loop=no | gibberish=no"
            for h in headers or key
        )

    (tmp_path / "first.txt").write_text(
        answer(key, lambda doc: doc[1] in ("alphaset-0", "alphaset-1")) + "\nCounts: 2\n"
    )
    again = tmp_path / "again"
    flags2 = [flags[0], "--parts", "1", "--prefix", "Y", "--out", str(again)]
    assert blind_read.main(["pack", *flags2]) == 0
    key2 = json.loads((again / "key.json").read_text())
    (tmp_path / "second.txt").write_text(answer(key2, lambda doc: doc[1] == "alphaset-0"))
    capsys.readouterr()
    score = ["score", str(out / "key.json"), str(tmp_path / "first.txt")]
    assert (
        blind_read.main([*score, str(tmp_path / "second.txt"), "--key", str(again / "key.json")])
        == 0
    )
    printed = capsys.readouterr().out
    assert "alphaset: 4 read; chatter 2/4" in printed and "betaset: 3 read; chatter 0/3" in printed
    assert "read twice: 4; chatter: same label 3, yes by both 1, by either 2" in printed

    # mistakes: one line on stderr, exit 2, nothing written
    (tmp_path / "stray.txt").write_text("Z999 | chatter=no | loop=no | gibberish=no\n")
    twice = tmp_path / "twice.txt"
    twice.write_text(answer(key, lambda doc: False, headers=list(key)[:1] * 2))
    (tmp_path / "list.json").write_text("[1]")
    (tmp_path / "dup.jsonl").write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
    for argv, says in [
        (["pack", *flags, "--out", str(out)], "not an empty folder"),
        (["pack", *flags, "--out", str(tmp_path / "stray.txt" / "p")], "stray.txt is a file"),
        (["pack", *flags, "--parts", "8", "--out", str(tmp_path / "p8")], "--parts must be"),
        (["pack", f"d={tmp_path / 'dup.jsonl'}", "--out", str(tmp_path / "pd")], "occurs twice"),
        ([*score[:2], str(tmp_path / "stray.txt")], "Z999 is in no key"),
        ([*score[:2], str(twice)], "answered twice"),
        ([*score, "--key", str(out / "key.json")], "is in two keys"),
        (["score", str(tmp_path / "missing.json"), str(twice)], "not found (pack's key.json)"),
        (["score", str(twice), str(twice)], "not a readable pack's key.json"),
        (["score", str(tmp_path / "list.json"), str(twice)], "list.json: not a pack's key.json"),
    ]:
        assert exit_code(lambda argv=argv: blind_read.main(argv)) == 2, argv
        assert says in capsys.readouterr().err
    assert not (tmp_path / "p8").exists() and not (tmp_path / "pd").exists()


# -- the talk probe (benchmarks/talk_probe.py) ----------------------------------------------------
def test_the_talk_probe_learns_from_every_answered_document_once():
    from benchmarks import blind_read, talk_probe

    docs = talk_probe.labelled()
    by_domain = {d: [x for x in docs if x.domain == d] for d in ("biomedicine", "finance")}
    # 400 biomedicine documents (200 read again), 520 finance (200 again, 120 new)
    assert {d: len(x) for d, x in by_domain.items()} == {"biomedicine": 400, "finance": 520}
    root = talk_probe.DATA
    key = blind_read.merge_keys([blind_read.read_key(root / "biomedicine" / "key.json")])
    first = {}
    for path in sorted((root / "biomedicine").glob("*.txt")):
        first.update(blind_read.read_labels(path, key))
    assert sum(x.chatter for x in by_domain["biomedicine"]) == sum(
        labels["chatter"] for labels in first.values()
    )  # the first reader's label, as blind_read's score counts it
    assert all(not x.clean for x in docs if x.chatter)  # clean: no reader said chatter
    assert all(x.chatter or not x.clean for x in docs if x.quotes)
    assert sum(len(x.quotes) for x in docs) > 200


def test_the_talk_threshold_is_the_lowest_step_within_the_real_limit():
    from benchmarks.talk_probe import REAL_LIMIT, STEP, calibrate

    scores = {"a": np.linspace(-6.0, 1.9, 1000), "b": np.full(300, -3.0)}
    threshold = calibrate(scores)
    assert threshold % STEP == 0
    assert (scores["a"] >= threshold).mean() <= REAL_LIMIT
    assert (scores["a"] >= threshold - STEP).mean() > REAL_LIMIT


def test_the_residue_benchmark_reads_every_labelled_pack_once_and_counts_repeats():
    from benchmarks import residue, talk_probe

    docs = talk_probe.labelled(residue.ROOTS)
    # the figures docs/quality.md gives: each document once, however many packs read it
    assert (len(docs), sum(d.chatter for d in docs), sum(d.loop for d in docs)) == (2664, 733, 281)
    shipped = talk_probe.labelled()
    assert {d.text for d in shipped} < {d.text for d in docs}  # the probe's labels among them
    assert residue.most_repeated("The rate rose. The rate rose! the RATE rose; it fell.", 3) == 3
    assert residue.most_repeated("one two", 3) == 0
    angles = np.radians([0.0, 5.0, 90.0, 10.0])  # three sentences within 10 degrees, one apart
    copies = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    assert residue.near_copies(copies, 0.95) == 3 and residue.near_copies(copies, 0.999) == 1
    assert residue.near_copies(copies[:1], 0.5) == 1


def test_blank_fragments_still_route_a_quality_refusal_to_the_writer(ctx, stub_models, tmp_path):
    """A prompt folder whose quality_* fragments are empty (no `{problem}` at all): the structured
    protocol still sends the draft back to its writer, not to the conductor for a new brief, and
    the text protocol's conductor is still told the quality check sent it back."""
    folder = tmp_path / "blank"
    folder.mkdir()
    (folder / "fragments.yaml").write_text(
        "".join(f'quality_{rule}: ""\n' for rule in quality.RULES)
    )
    blank = replace(ctx, prompts_dir=str(folder))
    drafts = iter([LOOP])
    conductor, expert = stub_models(brief, lambda m: next(drafts, None) or on_keywords(m))
    state = run_doc(graph, {"index": 0}, replace(blank, protocol="structured", reviews=0))
    assert state["ended"] == "final" and len(conductor.seen) == 1 and len(expert.seen) == 2

    def conductor_fn(messages):
        told = "quality check sent that document back" in messages[-1].text
        return final_answer(document("deposit betas at regional banks") if told else LOOP)

    seen, _ = stub_models(conductor_fn)
    alone = replace(blank, protocol="text", min_expert_share=0.0, out_dir=ctx.out_dir + "-text")
    state = run_doc(graph, {"index": 0, "seeds": ["deposit betas", "regional banks"]}, alone)
    assert state["ended"] == "final" and state["sent_back"][0]["reason"] == "low quality"
