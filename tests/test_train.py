"""train.cpt and train.evaluate on CPU with the real embedded SmolLM2-135M (and a tiny Mistral)."""

import json

import pytest
from conftest import real_data
from tiny import tiny_mistral

from train.cpt import lr_at
from train.cpt import main as cpt
from train.evaluate import main as evaluate

pytestmark = pytest.mark.slow
SENTENCES = [
    "The bank raised its dividend after a strong quarter of lending growth.",
    "Operating profit fell as raw material costs climbed in the third quarter.",
    "The company expects net sales to increase by ten percent next year.",
    "Bond yields rose sharply after the central bank signalled further hikes.",
]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    texts = [" ".join(SENTENCES[i % 4 :] + SENTENCES[: i % 4]) for i in range(12)]
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    return path


def metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


COMMON = [
    "--seq-len",
    "64",
    "--batch-size",
    "2",
    "--lr",
    "3e-4",
    "--warmup",
    "0",
    "--log-every",
    "1",
    "--held-out",
    "0.25",
    "--eval-every",
    "100",
]


def test_loss_goes_down_and_a_final_model_is_saved(tmp_path, corpus):
    out = tmp_path / "ckpt"
    assert (
        cpt(
            [
                "--corpus",
                str(corpus),
                "--out",
                str(out),
                "--max-steps",
                "8",
                "--save-every",
                "100",
                *COMMON,
            ]
        )
        == 0
    )
    losses = [r["loss"] for r in metrics(out) if "loss" in r]
    assert len(losses) == 8 and losses[-1] < 0.7 * losses[0], losses
    assert any("val_loss" in r for r in metrics(out))
    assert (out / "final" / "model.safetensors").exists()
    assert (out / "final" / "tokenizer_config.json").exists()
    config = json.loads((out / "train_config.json").read_text())
    assert config["tokens_per_step"] == 128 and config["params"] > 100e6


def test_resume_continues_at_the_same_step_with_the_same_data(tmp_path, corpus):
    straight, resumed = tmp_path / "a", tmp_path / "b"

    def run(out, *extra):
        return cpt(
            ["--corpus", str(corpus), "--out", str(out), "--max-steps", "4", *extra, *COMMON]
        )

    assert run(straight, "--save-every", "2") == 0
    assert run(resumed, "--stop-after-steps", "2") == 0
    assert not (resumed / "final").exists()
    assert run(resumed, "--save-every", "2", "--resume") == 0
    a = {r["step"]: r["loss"] for r in metrics(straight) if "loss" in r}
    b = {r["step"]: r["loss"] for r in metrics(resumed) if "loss" in r}
    assert sorted(b) == [1, 2, 3, 4]
    for step in (3, 4):
        assert b[step] == pytest.approx(a[step], abs=2e-3)


def test_mistral_code_path_and_gradient_accumulation(tmp_path, corpus):
    model = tiny_mistral(tmp_path / "mistral")
    out = tmp_path / "ckpt"
    assert (
        cpt(
            [
                "--corpus",
                str(corpus),
                "--model",
                str(model),
                "--out",
                str(out),
                "--max-steps",
                "2",
                "--tokens-per-step",
                "256",
                "--gradient-checkpointing",
                *COMMON,
            ]
        )
        == 0
    )
    config = json.loads((out / "train_config.json").read_text())
    assert config["accumulation"] == 2
    assert json.loads((out / "final" / "config.json").read_text())["model_type"] == "mistral"
    # The schedule steps once per optimizer step, not once per micro-step.
    expected = [lr_at(s, 2, 0, 3e-4, 0.1) for s in (1, 2)]
    assert [r["lr"] for r in metrics(out) if "lr" in r] == pytest.approx(expected)


def test_tokens_is_an_exact_budget(tmp_path, corpus, capsys):
    model = tiny_mistral(tmp_path / "mistral")
    out = tmp_path / "ckpt"
    # 12 documents of ~60 tokens: 384 tokens are 3 steps of 128, whatever the corpus length
    assert (
        cpt(
            [
                "--corpus",
                str(corpus),
                "--model",
                str(model),
                "--out",
                str(out),
                "--tokens",
                "384",
                "--held-out",
                "0",
                "--seq-len",
                "64",
                "--batch-size",
                "2",
                "--log-every",
                "1",
            ]
        )
        == 0
    )
    config = json.loads((out / "train_config.json").read_text())
    assert (config["trained_tokens"], config["total_steps"], config["train_blocks"]) == (384, 3, 6)
    assert [r["tokens"] for r in metrics(out) if "tokens" in r] == [128, 256, 384]
    assert (
        cpt(
            [
                "--corpus",
                str(corpus),
                "--model",
                str(model),
                "--out",
                str(tmp_path / "long"),
                "--tokens",
                "12800",
                "--seq-len",
                "64",
                "--batch-size",
                "2",
                "--held-out",
                "0",
            ]
        )
        == 2
    )
    assert (
        cpt(
            [
                "--corpus",
                str(corpus),
                "--model",
                str(model),
                "--out",
                str(tmp_path / "odd"),
                "--tokens",
                "300",
                "--seq-len",
                "64",
                "--batch-size",
                "2",
            ]
        )
        == 2
    )
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    from train.data import read_texts
    from train.realtext import count_tokens, tokenizer_of

    n = count_tokens(read_texts(corpus), tokenizer_of(str(model)))
    assert errors[0] == (
        f"error: {corpus} has {n} tokens, fewer than --tokens 12800; "
        f"pass --epochs {-(-12800 // n)} to repeat it"
    )
    assert errors[1] == (
        "error: --tokens 300 is not a multiple of the 128 tokens per step "
        "(--seq-len 64 x --batch-size 2 x 1 process(es) x accumulation): "
        "use 256 or 384"
    )


def test_evaluate_scores_both_tasks_and_perplexity(tmp_path, corpus):
    # the tasks' data, or a skip
    real_data("finance/fpb.jsonl"), real_data("biomed/pubmedqa_pqal.jsonl")
    out = tmp_path / "eval"
    assert (
        evaluate(
            [
                "--model",
                "embedded",
                "--tasks",
                "fpb,pubmedqa",
                "--limit",
                "3",
                "--perplexity",
                str(corpus),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    model = results["model"]
    assert results["split"]["tasks"] == "evaluation" and results["split"]["rule"] == "sha256-ws-0.5"
    assert model["fpb_n"] == 3 and model["pubmedqa_n"] == 3 and 0 <= model["fpb_weighted_f1"] <= 1
    assert 1 < model["perplexity"] < 1000
    assert "| perplexity | " in (out / "results.md").read_text()


def test_bad_training_input(tmp_path, corpus, capsys):
    assert cpt(["--corpus", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "x")]) == 2
    assert cpt(["--corpus", str(corpus), "--out", str(tmp_path / "y"), "--resume"]) == 2
    assert (
        evaluate(["--model", "embedded", "--tasks", "astrology", "--out", str(tmp_path / "z")]) == 2
    )
    # refused before the model loads (a missing model is not what is reported)
    scored = ["--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "z")]
    assert evaluate([*scored, "--tasks", "fpb", "--task-file", "fbp=x.jsonl"]) == 2
    assert evaluate([*scored, "--tasks", "", "--perplexity", str(tmp_path / "none.jsonl")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert err == [
        f"error: corpus not found: {tmp_path / 'none.jsonl'}",
        f"error: --resume: no checkpoint in {tmp_path / 'y' / 'checkpoints'}",
        "error: unknown task 'astrology' (available: fpb, pubmedqa)",
        "error: unknown --task-file name 'fbp' (available: fpb, pubmedqa)",
        f"error: --perplexity not found: {tmp_path / 'none.jsonl'}",
    ]
    assert not (tmp_path / "z").exists()
