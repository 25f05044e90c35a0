"""train.sft: the loss is on the response tokens only (the embedded SmolLM2's chat template, a
tiny Mistral), on the loop train.cpt shares."""

import json

import pytest
from tiny import tiny_mistral

from core.errors import UserError
from train.sft import IGNORE, collate, encode, read_chats
from train.sft import main as sft

INSTRUCTION = "Explain why Northwind Bank cut its dividend in 2023, in two sentences."
RESPONSE = "Loan losses rose sharply. The bank kept capital to meet its buffer."


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    return tiny_mistral(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def chat(instruction=INSTRUCTION, response=RESPONSE):
    return [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]


def test_prompt_tokens_are_masked_and_response_tokens_are_labelled(tokenizer):
    example = encode(chat(), tokenizer, 1024)
    ids, labels = example["input_ids"], example["labels"]
    prompt = tokenizer.apply_chat_template(chat()[:1], add_generation_prompt=True, tokenize=False)
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    # system prompt, instruction, assistant header: no loss
    assert labels[:n_prompt] == [IGNORE] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:] and n_prompt < len(ids)
    trained = tokenizer.decode([t for t in labels if t != IGNORE])
    assert trained.startswith(RESPONSE) and INSTRUCTION not in trained and "user" not in trained
    # Cut at max_len inside the response: what is left of it is still trained; inside the prompt:
    # dropped.
    assert encode(chat(), tokenizer, n_prompt + 2)["labels"][-2:] == ids[n_prompt : n_prompt + 2]
    assert encode(chat(), tokenizer, n_prompt) is None


def test_the_training_loss_is_the_response_tokens_loss_only(model_dir, tokenizer):
    """The loss train.sft minimises equals cross-entropy over the response tokens alone, and differs
    from the loss over every token: a prompt token trained on would change it."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    # sharpen the random model's logits: per-token losses then differ by whole units
    with torch.no_grad():
        model.lm_head.weight.mul_(200)
    other = chat("What is a covenant?", "A promise in a loan contract.")
    examples = [encode(chat(), tokenizer, 1024), encode(other, tokenizer, 1024)]
    batch = collate(examples, tokenizer.eos_token_id)
    with torch.no_grad():
        loss = model(**batch).loss.item()
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    log_probs = torch.log_softmax(logits[:, :-1].float(), -1)
    targets = batch["input_ids"][:, 1:]
    token_loss = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    response = batch["labels"][:, 1:] != IGNORE
    real = batch["attention_mask"][:, 1:].bool()
    response_only, everything = token_loss[response].mean().item(), token_loss[real].mean().item()
    assert loss == pytest.approx(response_only, rel=1e-5)
    # Training on the prompt too would give `everything`, which the assertion above tells apart:
    assert abs(response_only - everything) > 1e-3 * loss
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE).all()  # padding: never trained


def test_sft_end_to_end_on_an_instruction_run(tmp_path, model_dir):
    run = tmp_path / "set"
    run.mkdir()
    records = [
        {"instruction": f"{INSTRUCTION} ({i})", "response": RESPONSE, "text": INSTRUCTION}
        for i in range(4)
    ]
    (run / "instructions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert read_chats(run) == [chat(r["instruction"]) for r in records]
    out = tmp_path / "sft"
    assert (
        sft(
            [
                "--data",
                str(run),
                "--model",
                str(model_dir),
                "--out",
                str(out),
                "--max-steps",
                "3",
                "--batch-size",
                "2",
                "--lr",
                "1e-3",
                "--log-every",
                "1",
            ]
        )
        == 0
    )
    config = json.loads((out / "train_config.json").read_text())
    assert config["examples"] == 4 and config["prompt_tokens"] > config["response_tokens"] > 0
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and (out / "final" / "config.json").exists()
    # never overwritten
    assert sft(["--data", str(run), "--model", str(model_dir), "--out", str(out)]) == 2


def test_sft_runs_on_the_shared_loop_stops_and_resumes(tmp_path, model_dir):
    """The loop's flags work for SFT too: accumulation, --stop-after-steps, --resume and
    --min-lr-ratio."""
    from train.loop import lr_at

    data = tmp_path / "chats.jsonl"
    data.write_text(
        "".join(json.dumps({"messages": chat(f"{INSTRUCTION} ({i})")}) + "\n" for i in range(6))
    )
    out = tmp_path / "sft"
    common = [
        "--data",
        str(data),
        "--model",
        str(model_dir),
        "--out",
        str(out),
        "--max-steps",
        "4",
        "--batch-size",
        "1",
        "--accumulation",
        "2",
        "--lr",
        "1e-3",
        "--warmup",
        "0",
        "--min-lr-ratio",
        "0.5",
        "--log-every",
        "1",
        "--save-every",
        "2",
    ]
    assert sft([*common, "--stop-after-steps", "2"]) == 0
    assert not (out / "final").exists() and (out / "checkpoints" / "step-000002").is_dir()
    assert sft(common) == 2  # a started run is continued only when asked
    assert sft([*common, "--resume"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    # one schedule step per optimizer step (not per micro-batch or per process), down to lr x 0.5
    expected = [lr_at(s, 4, 0, 1e-3, 0.5) for s in (1, 2, 3, 4)]
    assert [r["lr"] for r in rows] == pytest.approx(expected)
    config = json.loads((out / "train_config.json").read_text())
    assert config["accumulation"] == 2 and config["examples"] == 6
    assert (out / "final" / "config.json").exists()


@pytest.mark.parametrize("line", ['{"messages": "hello"}', '{"messages": [1, 2]}'])
def test_messages_that_are_not_chat_turns_are_one_line(tmp_path, line):
    (tmp_path / "d.jsonl").write_text(line + "\n")
    with pytest.raises(UserError, match="line 1 has neither 'messages' ending in an assistant"):
        read_chats(tmp_path / "d.jsonl")
