"""Shared fixtures: chat models stubbed at the model boundary, keyed on prompt content."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import fields

import pytest
from langchain_core.language_models.fake_chat_models import FakeChatModel
from langchain_core.messages import BaseMessage

from agents.calls import Accounting, Router
from agents.instruction import load_instruct_prompts
from benchmarks.mock_server import prose
from graph.instruct.memory import InstructRun, instruction_memory, read_sources
from graph.session import Run, memory_for, prompts_for, run_dir
from graph.settings import DocumentSettings, InstructSettings
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


class Stubs:
    """What the stubbed tests run with: the chat-model stubs behind real Routers (caps, retries,
    accounting), and one memory per run directory, as one process would have."""

    routers: dict[str, Router] = {}
    memories: dict = {}
    runs: dict = {}

    @classmethod
    def reset(cls) -> None:
        cls.routers, cls.memories, cls.runs = {}, {}, {}


def stub_memory(settings):
    """The memory of `settings`' run directory (one per directory, as in one process)."""
    directory = run_dir(settings)
    if directory not in Stubs.memories:
        instruct = isinstance(settings, InstructSettings)
        opened = instruction_memory(settings) if instruct else memory_for(settings)
        Stubs.memories[directory] = opened
    return Stubs.memories[directory]


def stub_run(settings) -> Run:
    """The Run a stubbed test hands the graph for `settings`: the real prompts, memory and
    embedder, the installed chat-model stubs (stub_models) as conductor and writer."""
    if settings not in Stubs.runs:
        parts = {
            "prompts": prompts_for(settings),
            "memory": stub_memory(settings),
            "conductor": Stubs.routers["conductor"],
            "writer": Stubs.routers["expert"],
        }
        if isinstance(settings, InstructSettings):
            instruct = load_instruct_prompts(settings.domain, settings.prompts_dir or None)
            run = InstructRun(settings, instruct, read_sources(settings.corpus), **parts)
        else:
            run = Run(settings, **parts)
        Stubs.runs[settings] = run
    return Stubs.runs[settings]


def settings_as(kind, settings, **changes):
    """`settings` as another graph's settings class (the fields they share), with `changes`."""
    shared = {f.name: getattr(settings, f.name) for f in fields(kind) if hasattr(settings, f.name)}
    return kind(**{**shared, **changes})


@pytest.fixture
def ctx(tmp_path) -> DocumentSettings:
    Stubs.reset()
    # the free-text protocol unless a test asks for the default (structured)
    yield DocumentSettings(
        protocol="text",
        domain="finance",
        out_dir=str(tmp_path / "run"),
        base_url="http://stub.invalid/v1",
        model="stub",
    )
    Stubs.reset()


@pytest.fixture
def stub_models():
    """Install conductor/expert stubs: `stub_models(conductor_fn, expert_fn)` returns the two
    fakes."""

    def install(conductor_fn, expert_fn=lambda messages: "Expert text about the topic."):
        conductor, expert = scripted(conductor_fn), scripted(expert_fn)
        # The real Router (caps, retries, accounting) with the fake model behind it.
        # The stub endpoints take grammars as llama.cpp does, so tests see what would be sent.
        accounting = Accounting()
        Stubs.routers = {
            "conductor": Router(
                ["stub://c"],
                "stub-conductor",
                0.0,
                64,
                backoff=0.0,
                grammar_style="llama.cpp",
                accounting=accounting,
            ),
            "expert": Router(
                ["stub://e"],
                "stub-expert",
                0.0,
                64,
                backoff=0.0,
                grammar_style="llama.cpp",
                accounting=accounting,
            ),
        }
        Stubs.routers["conductor"].client = lambda endpoint: conductor
        Stubs.routers["expert"].client = lambda endpoint: expert
        Stubs.runs = {}  # a Run built with earlier stubs would keep them
        return conductor, expert

    return install


def run_doc(graph, payload: dict, settings) -> dict:
    """One item through `graph` on the stubs; `settings` taken as the graph's own settings class
    (a baseline's from MetaSynth's, for side-by-side tests)."""
    if type(settings) is not graph.context_schema:
        settings = settings_as(graph.context_schema, settings)
    return asyncio.run(graph.ainvoke(payload, context=stub_run(settings)))


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
