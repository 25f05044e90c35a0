"""Shared fixtures: chat models stubbed at the model boundary, keyed on prompt content."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from langchain_core.language_models.fake_chat_models import FakeChatModel
from langchain_core.messages import BaseMessage

from agents.calls import Router
from benchmarks.mock_server import prose
from graph import resources
from graph.configuration import Context
from train.tasks import DATA


def real_data(name: str):
    """A file of the real domain text (METASYNTH_DATA, else ../shared/data beside the checkout); the
    test is skipped, with the reason, where it is absent."""
    path = DATA / name
    if not path.is_file():
        pytest.skip(
            f"real text not found: {path} (../shared/data beside the checkout, or METASYNTH_DATA)"
        )
    return path


class ScriptedChat(FakeChatModel):
    """A fake chat model whose reply is a function of the messages it receives (so parallel
    branches stay deterministic); it records every conversation it was sent."""

    respond: Callable[[list[BaseMessage]], str]
    seen: list = []
    extra: list = []  # the extra_body of each call (grammars), in the order of `seen`
    lock: object = None

    def _call(self, messages, stop=None, run_manager=None, **kwargs) -> str:
        with self.lock:
            self.seen.append(list(messages))
            self.extra.append(kwargs.get("extra_body"))
        return self.respond(messages)

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        # FakeChatModel's async path ignores _call
        return self._generate(messages, stop=stop, **kwargs)


def scripted(respond) -> ScriptedChat:
    return ScriptedChat(respond=respond, seen=[], extra=[], lock=threading.Lock())


@pytest.fixture
def ctx(tmp_path) -> Context:
    resources.clear()
    yield Context(  # the free-text protocol unless a test asks for the default (structured)
        protocol="text",
        domain="finance",
        out_dir=str(tmp_path / "run"),
        base_url="http://stub.invalid/v1",
        model="stub",
    )
    resources.clear()


@pytest.fixture
def stub_models(monkeypatch):
    """Install conductor/expert stubs: `stub_models(conductor_fn, expert_fn)` returns the two
    fakes."""

    def install(conductor_fn, expert_fn=lambda messages: "Expert text about the topic."):
        conductor, expert = scripted(conductor_fn), scripted(expert_fn)
        # The real Router (caps, retries, accounting) with the fake model behind it.
        # The stub endpoints take grammars as llama.cpp does, so tests see what would be sent.
        routers = {
            "conductor": Router(
                ["stub://c"], "stub-conductor", 0.0, 64, backoff=0.0, grammar_style="llama.cpp"
            ),
            "expert": Router(
                ["stub://e"], "stub-expert", 0.0, 64, backoff=0.0, grammar_style="llama.cpp"
            ),
        }
        routers["conductor"].client = lambda endpoint: conductor
        routers["expert"].client = lambda endpoint: expert
        monkeypatch.setattr(
            resources, "conductor_router", lambda ctx, loop=None: routers["conductor"]
        )
        monkeypatch.setattr(resources, "expert_router", lambda ctx, loop=None: routers["expert"])
        return conductor, expert

    return install


def run_doc(graph, payload: dict, ctx: Context) -> dict:
    return asyncio.run(graph.ainvoke(payload, context=ctx))


def document(topic: str, n: int = 8) -> str:
    """A plausible document whose content (and so embedding) is driven by `topic`, varied enough to
    pass the quality gate."""
    return prose(topic, n)


def final_answer(text: str, summary: str = "A document.", category: str = "banking") -> str:
    return f'>> FINAL ANSWER:\n"""\n{text}\n"""\nSummary: {summary}\nCategory: {category}'


def relayed(messages, name: str) -> str:
    """The latest reply of expert `name` relayed to the conductor in this conversation."""
    import re

    text = "\n".join(m.text for m in messages)
    return re.findall(rf'{re.escape(name)}\'s output:\n"""\n(.*?)\n"""', text, re.DOTALL)[-1]
