"""The multi-GPU path without GPUs: `accelerate launch` with the shipped FSDP config, 2 CPU
processes over gloo, trains a tiny Mistral through train.cpt, stops, resumes, and saves a final/
that loads and matches one unsharded process given the same blocks per step (so train/configs cannot
rot)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny import tiny_mistral

from train.cpt import main as cpt

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "train" / "configs" / "fsdp.yaml"
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args: list[str]) -> subprocess.CompletedProcess:
    # The shipped file as it is; only what a CPU box must change is given on the command line.
    command = [
        str(Path(sys.executable).with_name("accelerate")),
        "launch",
        "--config_file",
        str(CONFIG),
        "--num_processes",
        "2",
        "--mixed_precision",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "train.cpt",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _val_loss(out: Path) -> float:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["val_loss"] for r in rows if "val_loss" in r][-1]


def test_fsdp_on_two_cpu_processes_trains_resumes_and_saves_a_loadable_model(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    assert yaml.safe_load(CONFIG.read_text())["distributed_type"] == "FSDP"
    model = tiny_mistral(tmp_path / "tiny")
    corpus = tmp_path / "corpus.jsonl"
    words = "bank profit quarter loan capital dividend yield market shares bond rate sales".split()
    corpus.write_text(
        "".join(
            json.dumps({"text": " ".join(words[i % 12 :] + words[: i % 12])}) + "\n"
            for i in range(48)
        )
    )
    common = [
        "--corpus",
        str(corpus),
        "--model",
        str(model),
        "--seq-len",
        "32",
        "--max-steps",
        "4",
        "--save-every",
        "2",
        "--log-every",
        "1",
        "--held-out",
        "0.1",
        "--lr",
        "1e-2",
        "--warmup",
        "0",
        "--seed",
        "3",
    ]
    sharded = tmp_path / "fsdp"
    first = _launch(
        [*common, "--out", str(sharded), "--batch-size", "1", "--stop-after-steps", "2"]
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert not (sharded / "final").exists()
    shards = sharded / "checkpoints" / "step-000002" / "pytorch_model_fsdp_0"
    assert sorted(p.name for p in shards.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    second = _launch([*common, "--out", str(sharded), "--batch-size", "1", "--resume"])
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout + second.stderr
    config = json.loads((sharded / "train_config.json").read_text())
    assert config["distributed"] == "DistributedType.FSDP" and config["processes"] == 2
    steps = [
        json.loads(x)["step"]
        for x in (sharded / "metrics.jsonl").read_text().splitlines()
        if "loss" in x and "val_loss" not in x
    ]
    assert steps == [1, 2, 3, 4]

    # One unsharded process with both processes' blocks in each batch takes the same steps.
    single = tmp_path / "single"
    assert cpt([*common, "--out", str(single), "--batch-size", "2"]) == 0
    a = AutoModelForCausalLM.from_pretrained(str(sharded / "final"))
    b = AutoModelForCausalLM.from_pretrained(str(single / "final"))
    start = AutoModelForCausalLM.from_pretrained(str(model))
    moved = max((p - q).abs().max().item() for p, q in zip(a.parameters(), start.parameters()))
    apart = max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))
    assert moved > 1e-3 and apart < 0.01 * moved, (moved, apart)
    assert _val_loss(sharded) == pytest.approx(_val_loss(single), rel=1e-3)
    with torch.no_grad():
        ids = torch.tensor([[1, 2, 3, 4]])
        assert torch.isfinite(a(input_ids=ids).logits).all()
