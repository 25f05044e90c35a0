"""Packing, the learning-rate schedule and the FPB metric, on known answers (no model)."""

import math
import re

import numpy as np
import pytest

from core.errors import UserError
from core.lock import hold
from train.data import collate, pack
from train.loop import checkpoints, lr_at
from train.tasks import weighted_f1


class CharTokenizer:
    """One token per character: document lengths are exact."""

    eos_token_id = 0

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[ord(c) for c in t] for t in texts]}


def test_pack_restarts_positions_only_at_document_starts_and_block_starts():
    # Documents of 4 and 10 tokens (+ EOS each: 5 and 11) in blocks of 8: the second document starts
    # at stream offset 5 and runs on through block 2, which must count on from 0 without a restart.
    blocks = pack(["abcd", "efghijklmn"], CharTokenizer(), 8, boundaries=True)
    assert len(blocks) == 2 and blocks[0]["input_ids"].dtype == np.int32
    assert blocks[0]["position_ids"].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    assert blocks[1]["position_ids"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    # A document that starts exactly at a block boundary, and one whose start falls inside block 2.
    blocks = pack(["abcdefg", "hij", "klmnopqrstu"], CharTokenizer(), 8, boundaries=True)
    assert blocks[1]["position_ids"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert collate(blocks)["position_ids"].dtype.is_floating_point is False


def test_pack_drops_the_tail_and_refuses_too_little_text():
    blocks = pack(["abcdefghij"], CharTokenizer(), 4)  # 11 tokens -> 2 blocks, 3 dropped
    assert [b["input_ids"].tolist() for b in blocks] == [[97, 98, 99, 100], [101, 102, 103, 104]]
    assert pack(["ab"], CharTokenizer(), 8, required=False) == []
    with pytest.raises(UserError, match="fewer than one block"):
        pack(["ab"], CharTokenizer(), 8)


def test_lr_schedule_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    lr, total, warmup, floor = 1e-3, 100, 10, 0.1
    assert lr_at(0, total, warmup, lr, floor) == pytest.approx(1e-4)
    assert lr_at(9, total, warmup, lr, floor) == pytest.approx(lr)
    assert lr_at(10, total, warmup, lr, floor) == pytest.approx(lr)
    assert lr_at(55, total, warmup, lr, floor) == pytest.approx(lr * (floor + (1 - floor) * 0.5))
    assert lr_at(100, total, warmup, lr, floor) == pytest.approx(lr * floor)
    assert lr_at(500, total, warmup, lr, floor) == pytest.approx(lr * floor)
    decay = [lr_at(s, total, warmup, lr, floor) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_weighted_f1_known_answer():
    gold = ["positive", "positive", "neutral", "negative"]
    predicted = ["positive", "neutral", "neutral", "positive"]
    # positive: P 1/2, R 1/2 -> 0.5 (support 2); neutral: P 1/2, R 1 -> 2/3 (1); negative: 0 (1)
    labels = ("positive", "neutral", "negative")
    assert weighted_f1(gold, predicted, labels) == pytest.approx((2 * 0.5 + 2 / 3) / 4)
    assert weighted_f1(gold, gold, ("positive", "neutral", "negative")) == 1.0
    assert math.isclose(weighted_f1(["a"], ["b"], ("a", "b")), 0.0)


def test_a_training_output_folder_is_named_as_such_not_as_a_tokenizer_problem(tmp_path):
    from agents.checkpoint import resolve

    (tmp_path / "ckpt" / "final").mkdir(parents=True)
    (tmp_path / "ckpt" / "final" / "config.json").write_text("{}")
    with pytest.raises(UserError, match=r"training output folder; the model is .*final"):
        resolve(str(tmp_path / "ckpt"))
    with pytest.raises(UserError, match="not a model folder"):
        resolve(str(tmp_path))
    assert resolve(str(tmp_path / "ckpt" / "final")) == str(tmp_path / "ckpt" / "final")
    # a mistyped path is named as one, not as a malformed hub id; OWNER/NAME stays a hub id
    for missing in ("ckpt/finance/final", str(tmp_path / "nope"), "./nope", "~/nope-x7"):
        with pytest.raises(UserError, match=f"^{re.escape(missing)}: no such folder$"):
            resolve(missing)
    assert resolve("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"
    from train.realtext import tokenizer_of

    with pytest.raises(UserError, match=r"^cannot load tokenizer '.*final': "):
        tokenizer_of(str(tmp_path / "ckpt" / "final"))  # a config.json and no tokenizer files


def test_a_task_without_its_data_names_where_it_looked_and_how_to_point_elsewhere(
    tmp_path, monkeypatch
):
    from train import tasks

    monkeypatch.setattr(tasks, "DATA", tmp_path)
    with pytest.raises(
        UserError,
        match=r"fpb: no data at .*finance/fpb.jsonl; set METASYNTH_DATA "
        r".* --task-file fpb=PATH",
    ):
        tasks.load_task("fpb")


def test_training_forward_keeps_packed_documents_apart():
    # With --boundaries a block holds two documents with restarting position ids: in a training
    # forward (train.cpt's for_training) the second document's logits must equal its logits alone,
    # i.e. it attends to nothing of the first. With the KV cache on, transformers ignores the
    # restart.
    torch = pytest.importorskip("torch")
    from transformers import MistralConfig, MistralForCausalLM

    from train.cpt import for_training

    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    config._attn_implementation = "sdpa"
    model = for_training(MistralForCausalLM(config)).train()
    ids = torch.randint(0, 128, (1, 24))
    positions = torch.cat([torch.arange(10), torch.arange(14)])[None]
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=positions).logits[0, 10:]
        alone = model(input_ids=ids[:, 10:]).logits[0]
    assert torch.allclose(packed, alone, atol=1e-5)


def test_an_interrupted_save_is_not_a_checkpoint(tmp_path):
    (tmp_path / "checkpoints" / "step-000004").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step-000008.tmp").mkdir()  # a kill inside save()
    assert checkpoints(tmp_path) == [tmp_path / "checkpoints" / "step-000004"]


def test_a_second_writer_of_an_output_folder_is_refused_before_any_work(tmp_path, capsys):
    from train.cpt import main as cpt
    from train.sft import main as sft

    out = tmp_path / "out"
    with hold(out):  # another holder: flock refuses a second open file, in one process too
        assert cpt(["--corpus", str(tmp_path / "c.jsonl"), "--out", str(out)]) == 2
        assert sft(["--data", str(tmp_path / "d.jsonl"), "--out", str(out)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith(f"error: {out} is in use by pid ") for e in errors)
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written


def test_an_out_that_is_a_file_is_one_line_and_left_alone(tmp_path, capsys):
    from train.cpt import main as cpt

    (tmp_path / "c.jsonl").write_text('{"text": "a document"}\n')
    out = tmp_path / "out"
    out.write_text("mine")
    assert cpt(["--corpus", str(tmp_path / "c.jsonl"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"error: --out {out} cannot be made: {out} is a file"
    for flag in ("--validation", "--replay"):  # named as what they are, not as the corpus
        extra = ["--replay-ratio", "0.5"] if flag == "--replay" else []
        argv = ["--corpus", str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "o"), flag, "nope"]
        assert cpt([*argv, *extra]) == 2
        assert capsys.readouterr().err.strip().endswith(f"error: {flag} not found: nope")
    for flag, value in (("--grad-clip", "-1"), ("--min-lr-ratio", "2"), ("--warmup", "nan")):
        assert cpt(["--corpus", str(tmp_path / "c.jsonl"), "--out", str(out), flag, value]) == 2
        assert f"argument {flag}: must be" in capsys.readouterr().err  # a negative clip flips grads
    with pytest.raises(UserError, match=r"--out .*/out/under cannot be made: .*/out is a file$"):
        with hold(out / "under"):
            pass
    assert out.read_text() == "mine"


def test_a_tokenizer_is_loaded_once_per_name():
    from agents.tokens import load_tokenizer

    assert load_tokenizer() is load_tokenizer()  # count_tokens calls it once per document


def test_option_losses_keep_only_the_answer_positions_yet_equal_the_full_computation(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import MistralConfig, MistralForCausalLM

    from train.evaluate import option_losses

    class Tokenizer(CharTokenizer):  # evaluate tokenises one string at a time
        pad_token_id = 0

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) for c in text]}

    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    model = MistralForCausalLM(config).eval()

    class OneToken(Tokenizer):  # " x" is one token: the one-forward path
        def __call__(self, text, add_special_tokens=False):
            text = text.strip() if len(text.strip()) == 1 else text
            return {"input_ids": [ord(c) for c in text]}

    prompt = "Sentiment:"
    context = [ord(c) for c in prompt]
    # answers of 3, 5 and 5 tokens (padded batch), then of one token each (one forward)
    cases = ((Tokenizer(), ("up", "down", "flat")), (OneToken(), ("x", "y", "z")))
    for tokenizer, options in cases:
        check_option_losses(model, tokenizer, prompt, context, options, option_losses)


def check_option_losses(model, tokenizer, prompt, context, options, option_losses):
    import torch

    fast = option_losses(model, tokenizer, prompt, options, 64)
    for option, loss in zip(options, fast):
        answer = tokenizer(" " + option)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([context + answer])).logits[0]
        logprobs = torch.log_softmax(logits, -1)
        full = -sum(logprobs[len(context) - 1 + k, t].item() for k, t in enumerate(answer)) / len(
            answer
        )
        assert loss == pytest.approx(full, abs=1e-5)
