"""Long-lived objects a run needs (prompts, clients, memory), built once per configuration.

Nodes receive only the run's settings (plain, Studio-editable values: Context, InstructContext);
this module turns them into objects and caches them, so the CLI and the LangGraph server share one
code path.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np

from agents import embedded, llm
from agents.calls import Accounting, Router, Sampling
from agents.prompts import PromptSet, load_prompts
from agents.tokens import load_tokenizer
from graph.configuration import Context, Shared
from graph.seeds import SeedPicker, read_seed_docs
from memory.embedder import default_embedder
from memory.store import Memory

_cache: dict[tuple, object] = {}
_lock = threading.RLock()


def cached(key: tuple, build):
    with _lock:
        if key not in _cache:
            _cache[key] = build()
        return _cache[key]


def clear() -> None:
    """Forget every cached object (tests; a CLI run that switches directories)."""
    with _lock:
        _cache.clear()


def run_dir(ctx: Shared) -> Path:
    return Path(ctx.out_dir or f"runs/{ctx.domain}").resolve()


def urls(value: str) -> list[str]:
    return [u.strip() for u in value.split(",") if u.strip()]


def _resolve(base_url: str, model: str) -> tuple[list[str], str]:
    """Endpoints and model name; no base URL means the embedded server (started once per
    process)."""
    if not base_url:
        name = embedded.model_name(model)
        return [embedded.shared_server(name).base_url], name
    if not model:
        served = cached(("models", base_url), lambda: llm.check_server(urls(base_url)[0]))
        model = served[0] if served else "default"
    return urls(base_url), model


def _grammar_style(ctx: Shared, endpoint: str) -> str:
    if ctx.constrain == "off":
        return ""
    return cached(("grammar-style", endpoint), lambda: llm.grammar_style(endpoint))


def grammar_styles(ctx: Shared) -> dict[str, list[str]]:
    """How each role's servers take the protocol grammars ("none": unconstrained), for the
    manifest."""
    servers = {
        "conductor": _resolve(ctx.base_url, ctx.model)[0],
        "expert": _resolve(ctx.expert_base_url or ctx.base_url, ctx.expert_model or ctx.model)[0],
    }
    return {
        role: sorted({_grammar_style(ctx, url) or "none" for url in endpoints})
        for role, endpoints in servers.items()
    }


def check_grammars(ctx: Shared, grammars: dict[str, str]) -> None:
    """Every grammar through the parser of every server that takes one
    (agents.llm.check_grammars)."""
    roles = (
        (ctx.base_url, ctx.model),
        (ctx.expert_base_url or ctx.base_url, ctx.expert_model or ctx.model),
    )
    seen = set()
    for base_url, model in roles:
        endpoints, name = _resolve(base_url, model)
        for url in endpoints:
            if (style := _grammar_style(ctx, url)) and (url, name) not in seen:
                seen.add((url, name))
                llm.check_grammars(url, name, style, grammars)


def protocol(ctx: Context) -> str:
    """The conductor protocol of this run: 'auto' is structured, on every server. Measured
    (docs/protocol.md, "Choosing auto"): SmolLM2-135M cannot keep the free-text protocol, and on
    Qwen2.5-Coder-1.5B the structured protocol wrote 5 of 5 documents through experts while the text
    protocol's conductor answered alone until the fallback wrote, or finished none in 25 minutes."""
    return "structured" if ctx.protocol == "auto" else ctx.protocol


def loop_id() -> int:
    """Async clients belong to one event loop: routers are cached per loop."""
    try:
        return id(asyncio.get_running_loop())
    except RuntimeError:
        return 0


def accounting(ctx: Shared) -> Accounting:
    return cached(("accounting", str(run_dir(ctx))), Accounting)


def _router(
    ctx: Shared,
    role: str,
    base_url: str,
    model: str,
    temperature: float,
    max_tokens: int,
    loop: int | None = None,
    sampling: Sampling = Sampling(),
) -> Router:
    key = (
        "router",
        role,
        loop_id() if loop is None else loop,
        str(run_dir(ctx)),
        base_url,
        model,
        temperature,
        max_tokens,
        ctx.max_inflight,
        ctx.adaptive,
        ctx.request_timeout,
        ctx.max_retries,
        sampling,
    )

    def build() -> Router:
        endpoints, name = _resolve(base_url, model)
        router = Router(
            endpoints,
            name,
            temperature,
            max_tokens,
            max_inflight=ctx.max_inflight,
            adaptive=ctx.adaptive,
            timeout=ctx.request_timeout,
            retries=ctx.max_retries,
            accounting=accounting(ctx),
            sampling=sampling,
        )
        for endpoint in router.endpoints:
            endpoint.grammar_style = _grammar_style(ctx, endpoint.base_url)
        return router

    return cached(key, build)


def conductor_router(ctx: Shared, loop: int | None = None) -> Router:
    return _router(ctx, "conductor", ctx.base_url, ctx.model, ctx.temperature, ctx.max_tokens, loop)


def writer_sampling(ctx: Shared) -> Sampling:
    return Sampling(
        repeat_penalty=ctx.repeat_penalty, dry_multiplier=ctx.dry_multiplier, min_p=ctx.min_p
    )


def sampling_sent(ctx: Shared) -> dict[str, dict]:
    """The repetition controls the writers' servers get, by server kind, for the manifest."""
    endpoints = _resolve(ctx.expert_base_url or ctx.base_url, ctx.expert_model or ctx.model)[0]
    styles = {_grammar_style(ctx, url) for url in endpoints}
    return {style or "none": writer_sampling(ctx).fields(style) for style in styles}


def expert_router(ctx: Shared, loop: int | None = None) -> Router:
    """Experts default to the conductor's server and model; a separate server is asked for its
    model. Only the writers get the repetition controls: the conductor copies its experts' text into
    its final answer, which a DRY penalty would fight."""
    model = ctx.expert_model or ("" if ctx.expert_base_url else ctx.model)
    sampling = writer_sampling(ctx)
    return _router(
        ctx,
        "expert",
        ctx.expert_base_url or ctx.base_url,
        model,
        ctx.expert_temperature,
        ctx.expert_max_tokens,
        loop,
        sampling,
    )


def prompts(ctx: Shared) -> PromptSet:
    """The document graph's prompt files; the instruction graph's experts read expert.md too."""
    inline = {"expert.md": ctx.expert_prompt}
    if isinstance(ctx, Context):
        inline["conductor.md"] = ctx.conductor_prompt
    key = ("prompts", ctx.domain, ctx.prompts_dir, *inline.values())
    return cached(key, lambda: load_prompts(ctx.domain, ctx.prompts_dir or None, inline))


def memory(ctx: Context) -> Memory:
    directory = run_dir(ctx)
    return cached(
        ("memory", str(directory)),
        lambda: Memory(directory, default_embedder(), id_prefix=ctx.domain, index=ctx.index),
    )


def use_memory(ctx: Context, memory) -> None:
    """Make `memory` the run's memory in this process: a worker's view of a memory another process
    owns (memory/remote.py)."""
    with _lock:
        _cache[("memory", str(run_dir(ctx)))] = memory


def seed_picker(ctx: Context) -> SeedPicker | None:
    if not ctx.seed_docs:
        return None
    path = str(Path(ctx.seed_docs).resolve())
    return cached(
        ("seeds", path, ctx.seed), lambda: SeedPicker(seed_texts(ctx), default_embedder(), ctx.seed)
    )


def seed_texts(ctx: Context) -> list[str]:
    """The real documents of ctx.seed_docs (template-icl draws its examples from them)."""
    if not ctx.seed_docs:
        return []
    path = str(Path(ctx.seed_docs).resolve())
    return cached(("seed_texts", path), lambda: read_seed_docs(path))


def warm(ctx: Context, loop: int, picker: bool = True) -> None:
    """Build everything a document needs (file reads, model loads, server checks, HTTP clients) so
    that nodes on the event loop only look things up. Run it in a worker thread: see `ready`."""
    prompts(ctx)
    memory(ctx)
    if picker:  # embeds every seed document: only MetaSynth's topic-aware mode needs it
        seed_picker(ctx)
    seed_texts(ctx)
    load_tokenizer(ctx.tokenizer)
    _category_table(ctx)
    for router in (conductor_router(ctx, loop), expert_router(ctx, loop)):
        for endpoint in router.endpoints:
            router.client(endpoint)


async def ready(ctx: Context, picker: bool = True) -> None:
    await asyncio.to_thread(warm, ctx, loop_id(), picker)


def _category_table(ctx: Context) -> np.ndarray | None:
    domain = prompts(ctx).domain
    if not domain.categories:
        return None
    sentences = [
        prompts(ctx).fragment("category_sentence", domain=domain.name, label=label)
        for label in domain.categories
    ]
    return cached(
        ("categories", ctx.domain, tuple(sentences)), lambda: default_embedder().encode(sentences)
    )


def category_of(ctx: Context, vector: np.ndarray) -> str:
    """Nearest domain category label by embedding, for drafts that named none.

    Labels are embedded inside a sentence: bare one- or two-word labels put every generic document
    in the same category (5 of 5 SmolLM2 finance documents landed on one label, 3 labels this way).
    """
    table = _category_table(ctx)
    if table is None:
        return "uncategorized"
    return prompts(ctx).domain.categories[int(np.argmax(table @ vector.reshape(-1)))]
