"""train.ablate and what it stands on: the generation/evaluation split, exact token budgets,
decontamination, paired bootstrap intervals, and the ablation end to end on a tiny Mistral
(equal token counts, a SIGKILLed arm resumed, a second writer refused)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import real_data
from tiny import tiny_mistral

from core.errors import UserError
from core.splits import EVALUATION, GENERATION, record_text, select, split_of
from train import bootstrap
from train.data import budget_blocks
from train.decontaminate import EvalSet, clean, matches, n_for
from train.decontaminate import main as decontaminate
from train.tasks import TASKS, weighted_f1

ROOT = Path(__file__).resolve().parents[1]


class CharTokenizer:
    eos_token_id = 0

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[ord(c) for c in t] for t in texts]}


# ---- core/splits.py -----------------------------------------------------------------------------


def test_the_split_is_a_function_of_the_text_alone():
    texts = [f"Sentence number {i} about quarterly profit." for i in range(400)]
    halves = {t: split_of(t) for t in texts}
    # Reordering, appending and re-wrapping whitespace move nothing.
    assert {t: split_of(t) for t in reversed(texts)} == halves
    appended = texts + [f"A new sentence {i}." for i in range(100)]
    assert all(split_of(t) == halves[t] for t in appended[:400])
    assert all(split_of("  " + t.replace(" ", "\n  ")) == halves[t] for t in texts[:50])
    share = sum(h == GENERATION for h in halves.values()) / len(texts)
    assert 0.4 < share < 0.6, share
    records = [{"text": t} for t in texts]
    gen, ev = select(records, GENERATION), select(records, EVALUATION)
    assert len(gen) + len(ev) == len(records)
    assert not {r["text"] for r in gen} & {r["text"] for r in ev}
    assert gen == [r for r in records if halves[r["text"]] == GENERATION]  # order kept


def test_a_pubmedqa_record_is_split_by_its_abstract():
    record = {"question": "Does it work?", "contexts": ["First part.", "Second part."]}
    assert record_text(record) == "First part. Second part."
    assert split_of(record_text(record)) == split_of("First part.  Second part.")
    with pytest.raises(UserError, match="neither 'text' nor 'contexts'"):
        record_text({"question": "?"})
    with pytest.raises(UserError, match="unknown split 'test'"):
        select([record], "test")


def test_tasks_score_the_evaluation_half_and_its_dev_part_stays_inside_it():
    real_data("finance/fpb.jsonl"), real_data("biomed/pubmedqa_pqal.jsonl")
    from train.realtext import documents
    from train.tasks import load_task

    for name in ("fpb", "pubmedqa"):
        _, dev, test = load_task(name)
        _, gen_dev, gen_test = load_task(name, split=GENERATION)
        scored = {e.query for e in dev + test}
        assert scored and not scored & {e.query for e in gen_dev + gen_test}
        assert len(dev) == -(-(len(dev) + len(test)) // 10)
    # The real arm's text (the generation half) never holds an evaluated FPB sentence.
    _, dev, test = load_task("fpb")
    evaluated = {
        e.query.removeprefix("Sentence: ").removesuffix("\nSentiment:") for e in dev + test
    }
    assert not evaluated & set(documents("fpb", GENERATION))


# ---- exact token budgets (train/data.py, train/cpt.py) ------------------------------------------


def test_a_budget_is_exact_and_a_short_corpus_is_refused_unless_repetition_is_allowed():
    texts = ["abcdefg", "hijklmnopq", "rst"]  # 8 + 11 + 4 = 23 tokens with EOS
    blocks, info = budget_blocks(texts, CharTokenizer(), 4, 20, epochs=1, seed=0)
    assert sum(len(b["input_ids"]) for b in blocks) == 20 == info["trained_tokens"]
    assert info["corpus_tokens"] == 23
    with pytest.raises(UserError, match=r"has 23 tokens, fewer than --tokens 40; pass --epochs 2"):
        budget_blocks(texts, CharTokenizer(), 4, 40, epochs=1, seed=0)
    blocks, info = budget_blocks(texts, CharTokenizer(), 4, 40, epochs=2, seed=0)
    assert len(blocks) == 10 and info["passes"] == pytest.approx(40 / 23, abs=1e-4)
    # Another seed takes the documents in another order: the same count, other tokens first.
    other, _ = budget_blocks(texts, CharTokenizer(), 4, 20, epochs=1, seed=3)
    assert len(other) == 5


def test_ablate_refuses_a_budget_that_is_not_whole_steps(capsys):
    from train.ablate import main as ablate

    assert (
        ablate(
            [
                "--domain",
                "finance",
                "--tokens",
                "1000",
                "--seq-len",
                "64",
                "--out",
                "/nonexistent/never-made",
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --tokens 1000 is not a multiple of the 64 tokens per step (--seq-len 64 x "
        "--batch-size 1 x 1 process(es) x accumulation): use 960 or 1024"
    ]
    assert not Path("/nonexistent/never-made").exists()


# ---- decontamination ----------------------------------------------------------------------------

EVAL = [
    "Operating profit of the Finnish retailer rose to EUR 13.1 mn from EUR 8.7 mn",
    "Net sales fell 5 % to EUR 200 mn .",
    "Pretax profit doubled to EUR 9 mn .",
    "Shares fell .",
]


def test_an_eight_gram_of_a_short_evaluation_text_flags_a_document_and_seven_words_do_not():
    sets = [EvalSet.of("fpb", EVAL)]
    assert sets[0].n == 8  # median item far under 40 words
    copied = "In other news, operating profit of the Finnish retailer rose to EUR 13.1 last year."
    seven = "Elsewhere operating profit of the Finnish retailer rose sharply."
    eight = "Analysts said net sales fell 5 % to EUR 200 mn, below forecasts."
    # An item shorter than 8 words matches whole; one under 5 words ("Shares fell .") never does.
    whole = "Its pretax profit doubled to EUR 9 mn. Shares fell on the news."
    assert matches([copied, seven, eight, whole], sets) == [
        {"fpb": "operating profit of the finnish retailer rose to"},
        {},
        {"fpb": "net sales fell 5 to eur 200 mn"},
        {"fpb": "pretax profit doubled to eur 9 mn"},
    ]
    kept, dropped = clean([copied, seven], sets)
    assert kept == [seven] and dropped == 1


def test_long_evaluation_texts_use_thirteen_grams():
    long_text = " ".join(f"word{i}" for i in range(60))
    assert n_for([60, 45, 200]) == 13 and n_for([22, 10, 41]) == 8
    sets = [EvalSet.of("pubmedqa", [long_text])]
    twelve = " ".join(f"word{i}" for i in range(10, 22))
    thirteen = " ".join(f"word{i}" for i in range(10, 23))
    assert matches([twelve, thirteen], sets) == [{}, {"pubmedqa": thirteen}]


def test_decontaminate_cli_reports_per_corpus_and_writes_clean_copies(tmp_path, capsys):
    real_data("finance/fpb.jsonl")
    from train.realtext import held_out_texts

    sentence = held_out_texts("fpb", EVALUATION)[0]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        json.dumps({"text": "Intro. " + sentence})
        + "\n"
        + json.dumps({"text": "A wholly unrelated document about tulips."})
        + "\n"
    )
    out = tmp_path / "report"
    assert (
        decontaminate(
            ["--corpus", f"gen={corpus}", "--against", "fpb", "--out", str(out), "--write-clean"]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())[0]
    assert (report["documents"], report["contaminated"], report["share"]) == (2, 1, 0.5)
    assert report["by_set"]["fpb"]["n"] == 8
    assert [json.loads(x)["text"] for x in (out / "gen.clean.jsonl").read_text().splitlines()] == [
        "A wholly unrelated document about tulips."
    ]
    assert decontaminate(["--corpus", f"gen={corpus}", "--out", str(out)]) == 2  # never overwritten
    assert decontaminate(["--corpus", f"gen{corpus}", "--out", str(tmp_path / "x")]) == 2
    # a missing second corpus: nothing written for the first one either
    both = ["--corpus", f"gen={corpus}", "--corpus", f"b={tmp_path / 'none.jsonl'}"]
    assert decontaminate([*both, "--write-clean", "--out", str(tmp_path / "y")]) == 2
    assert not (tmp_path / "y" / "gen.clean.jsonl").exists()
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert errors == [
        f"error: {out} already holds a report; choose another --out",
        f"error: --corpus takes NAME=PATH, got 'gen{corpus}'",
        f"error: corpus not found: {tmp_path / 'none.jsonl'}",
    ]


# ---- bootstrap ----------------------------------------------------------------------------------


def _items(rng, n=60, flip=0.0):
    gold = list(rng.choice(TASKS["fpb"].options, size=n))
    predicted = [rng.choice(TASKS["fpb"].options) if rng.random() < flip else g for g in gold]
    nll = rng.uniform(20, 40, size=n)
    return {
        "perplexity": [[float(x), 10] for x in nll],
        "fpb": {"gold": gold, "predicted": predicted},
    }


def _better_than(base: dict) -> dict:
    """Lower NLL on every perplexity item and every FPB answer right."""
    return {
        "perplexity": [[x[0] * 0.8, x[1]] for x in base["perplexity"]],
        "fpb": {"gold": base["fpb"]["gold"], "predicted": base["fpb"]["gold"]},
    }


def test_the_vectorised_weighted_f1_is_sklearns():
    rng = np.random.default_rng(1)
    for _ in range(20):
        items = _items(rng, flip=0.5)
        index = {"fpb": rng.integers(0, 60, size=(1, 60)), "perplexity": np.zeros((1, 60), int)}
        ours = bootstrap.metrics_of(items, {"fpb": TASKS["fpb"]}, index)["fpb_weighted_f1"][0]
        gold = [items["fpb"]["gold"][i] for i in index["fpb"][0]]
        predicted = [items["fpb"]["predicted"][i] for i in index["fpb"][0]]
        assert ours == pytest.approx(weighted_f1(gold, predicted, TASKS["fpb"].options))


def test_intervals_are_paired_over_items_and_cover_seeds():
    rng = np.random.default_rng(0)
    base = _items(rng, flip=0.3)
    same = json.loads(json.dumps(base))
    better = _better_than(base)
    noisy = [_items(np.random.default_rng(s), flip=0.3) for s in (5, 6, 7)]
    for run in noisy:
        run["fpb"]["gold"] = base["fpb"]["gold"]
    table = bootstrap.table(
        base,
        {"same": [same], "better": [better, better], "noisy": noisy},
        {"fpb": TASKS["fpb"]},
        replicates=300,
    )
    assert table["arms"]["same"]["perplexity"]["delta_ci"] == [0.0, 0.0]  # paired: no noise at all
    ppl = table["arms"]["better"]["perplexity"]
    assert ppl["delta"] < 0 and ppl["delta_ci"][1] < 0 and ppl["delta_ci"][0] <= ppl["delta"]
    assert table["arms"]["better"]["fpb_accuracy"]["mean"] == 1.0
    lo, hi = table["base"]["fpb_accuracy"]["ci"]
    assert lo < table["base"]["fpb_accuracy"]["value"] < hi
    spread = table["arms"]["noisy"]["fpb_accuracy"]
    assert len(spread["seeds"]) == 3
    assert spread["mean"] == pytest.approx(np.mean(spread["seeds"]), abs=1e-4)
    with pytest.raises(ValueError, match="other items than the base"):
        bootstrap.table(base, {"short": [_items(rng, n=10)]}, {"fpb": TASKS["fpb"]}, replicates=10)


def test_arm_against_arm_intervals_are_of_the_difference():
    rng = np.random.default_rng(3)
    base = _items(rng, flip=0.3)
    twin = json.loads(json.dumps(base))
    better = _better_than(base)
    table = bootstrap.table(
        base,
        {"base-like": [base], "twin": [twin], "better": [better]},
        {"fpb": TASKS["fpb"]},
        replicates=300,
    )
    assert list(table["pairs"]) == ["base-like - twin", "base-like - better", "twin - better"]
    same = table["pairs"]["base-like - twin"]["perplexity"]
    assert same == {"difference": 0.0, "ci": [0.0, 0.0]}  # same items drawn for both arms
    worse = table["pairs"]["twin - better"]
    assert worse["perplexity"]["difference"] == pytest.approx(
        table["arms"]["twin"]["perplexity"]["mean"] - table["arms"]["better"]["perplexity"]["mean"],
        abs=2e-4,
    )
    assert worse["perplexity"]["ci"][0] > 0  # higher perplexity than `better` on every resample
    assert worse["fpb_accuracy"]["ci"][1] < 0


# ---- the ablation end to end --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_mistral(tmp_path_factory.mktemp("tiny") / "mistral")


def _corpus(path: Path, vocabulary: str, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    words = vocabulary.split()
    path.write_text(
        "".join(
            json.dumps({"text": " ".join(rng.choice(words, 30)) + "."}) + "\n" for _ in range(40)
        )
    )
    return path


def _env() -> dict:
    # one thread per process: the tests share 2 cores with whatever else runs
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.mark.slow
def test_ablation_end_to_end_with_a_killed_arm_and_a_second_writer(tmp_path, tiny):
    real_data("finance/fpb.jsonl")
    a = _corpus(tmp_path / "a.jsonl", "bank profit quarter loan capital dividend yield", 0)
    b = _corpus(tmp_path / "b.jsonl", "market shares bond rate sales costs margin outlook", 1)
    out = tmp_path / "ablation"
    argv = [
        "--domain",
        "finance",
        "--corpus",
        f"a={a}",
        "--corpus",
        f"b={b}",
        "--model",
        str(tiny),
        "--tokens",
        "512",
        "--seq-len",
        "32",
        "--seeds",
        "0",
        "--limit",
        "4",
        "--lr",
        "1e-3",
        "--val-tokens",
        "128",
        "--eval-every",
        "2",
        "--save-every",
        "4",
        "--log-every",
        "2",
        "--bootstrap",
        "100",
        "--out",
        str(out),
    ]
    command = [sys.executable, "-m", "train.ablate", *argv]
    log = open(tmp_path / "first.log", "w")  # a file, not a pipe: a full pipe would stall it
    first = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=log, stderr=log)
    arm_b = out / "arms" / "b" / "seed-0"
    deadline = time.time() + 240
    while not list((arm_b / "checkpoints").glob("step-00000[4-9]")):
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
        assert time.time() < deadline, "arm b never reached its first checkpoint"
        time.sleep(0.02)
    first.send_signal(signal.SIGSTOP)  # frozen mid-arm, still holding --out
    # A second writer of the same --out is refused at once, with one line naming the holder.
    second = subprocess.run(
        command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {out} is in use by pid {first.pid} on ")
    assert lines[0].endswith("; wait for it or use another --out")
    first.send_signal(signal.SIGKILL)  # then killed as a hard stop would: no clean-up runs
    first.wait()
    log.close()
    assert not (arm_b / "final").exists(), "the kill came too late to test a resume"
    scored_a = (out / "arms" / "a" / "seed-0" / "items.json").stat().st_mtime_ns

    rerun = subprocess.run(
        command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "a seed 0: already scored" in rerun.stderr
    assert "resumed from" in rerun.stdout + rerun.stderr
    assert (out / "arms" / "a" / "seed-0" / "items.json").stat().st_mtime_ns == scored_a  # kept
    results = json.loads((out / "results.json").read_text())
    assert list(results["scores"]["arms"]) == ["a", "b", "real"]
    tokens = {arm: t["0"] for arm, t in results["tokens"].items()}
    assert tokens == {"a": 512, "b": 512, "real": 512}
    assert set(results["scores"]["base"]) == {"perplexity", "fpb_accuracy", "fpb_weighted_f1"}
    assert results["split"]["evaluated"] == "evaluation" and results["evaluation_items"]["fpb"] == 4
    assert [r["corpus"] for r in results["decontamination"]] == ["a", "b", "real"]
    for arm in ("a", "b", "real"):  # scored, then its checkpoints deleted
        folder = out / "arms" / arm / "seed-0"
        assert (folder / "items.json").exists() and not (folder / "checkpoints").exists()
        assert not (folder / "final").exists()
    assert "| real |" in (out / "results.md").read_text()
    assert list(results["scores"]["pairs"]) == ["a - b", "a - real", "b - real"]
    assert "## Arm against arm" in (out / "results.md").read_text()
    assert (out / "results.png").stat().st_size > 0

    # The resumed arm logged each step once and trained as an uninterrupted run of the same command.
    from train.ablate import cpt_argv, parse_args
    from train.cpt import main as cpt

    rows = [json.loads(x) for x in (arm_b / "metrics.jsonl").read_text().splitlines()]
    resumed = {r["step"]: r["loss"] for r in rows if "loss" in r}
    assert sorted(resumed) == list(range(2, 17, 2))
    straight = tmp_path / "straight"
    assert cpt(cpt_argv(parse_args(argv), str(out / "data" / "b.jsonl"), straight, 0, False)) == 0
    rows = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        if "loss" in r:
            assert resumed[r["step"]] == pytest.approx(r["loss"], abs=2e-3)

    # Arms may be added later (the base and the trained arms are kept); an arm whose text changed
    # since it was trained, or one left out, is refused with one line and nothing rewritten.
    original = a.read_text()
    a.write_text(original + json.dumps({"text": "a document added after training."}) + "\n")
    grown = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert grown.returncode == 2 and len(grown.stderr.strip().splitlines()) == 1
    assert grown.stderr.startswith("error: arm a: its corpus has changed since")
    a.write_text(original)
    at = argv.index(f"b={b}")
    without_b = argv[: at - 1] + argv[at + 1 :]  # less "--corpus b=..."
    left_out = subprocess.run(
        [sys.executable, "-m", "train.ablate", *without_b],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert left_out.returncode == 2
    assert f"has arm b={b}; give it again unchanged" in left_out.stderr
    c = _corpus(tmp_path / "c.jsonl", "revenue guidance merger stake credit profit", 2)
    added = subprocess.run(
        [*command, "--corpus", f"c={c}"], cwd=ROOT, env=_env(), capture_output=True, text=True
    )
    assert added.returncode == 0, added.stderr[-3000:]
    assert "a seed 0: already scored" in added.stderr and "b seed 0: already scored" in added.stderr
    assert (out / "arms" / "a" / "seed-0" / "items.json").stat().st_mtime_ns == scored_a
    results = json.loads((out / "results.json").read_text())
    assert list(results["scores"]["arms"]) == ["a", "b", "c", "real"]
    assert "c - real" in results["scores"]["pairs"]


def test_a_damaged_ablation_record_is_one_line(tmp_path, capsys):
    from train.ablate import main as ablate

    (tmp_path / "c.jsonl").write_text('{"text": "a document"}\n')
    out, argv = tmp_path / "out", ["--domain", "finance", "--tokens", "512", "--seq-len", "512"]
    out.mkdir()
    for damaged in ("{not json", '{"arms": []}', '{"settings": 3}'):
        (out / "ablation.json").write_text(damaged)
        assert ablate([*argv, "--corpus", f"m={tmp_path / 'c.jsonl'}", "--out", str(out)]) == 2
        errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
        assert errors == [
            f"error: {out / 'ablation.json'} is damaged (no settings to compare); use another --out"
        ]
        assert (out / "ablation.json").read_text() == damaged
