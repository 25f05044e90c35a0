"""The call layer: replicas, caps, AIMD, retries (real HTTP against the mock server)."""

import asyncio

import pytest
from langchain_core.messages import HumanMessage

from agents.calls import Limiter, LLMFailure, Router
from benchmarks.mock_server import MockServer


def test_calls_spread_over_replicas_and_respect_the_cap():
    a, b = MockServer(latency=0.2), MockServer(latency=0.2)
    with a as url_a, b as url_b:
        router = Router([url_a, url_b], "mock-conductor", 0.0, 32, max_inflight=3)

        async def go():
            peak = 0

            async def one(i):
                nonlocal peak
                task = asyncio.create_task(router.call([HumanMessage(f"question {i}")], "expert:X"))
                await asyncio.sleep(0.05)
                peak = max(peak, *(e.limiter.inflight for e in router.endpoints))
                return await task

            await asyncio.gather(*(one(i) for i in range(16)))
            return peak

        peak = asyncio.run(go())
        assert a.completions + b.completions == 16 and min(a.completions, b.completions) >= 6
        assert peak <= 3
    stats = router.accounting.summary()["by_name"]["expert:X"]
    assert stats["calls"] == 16 and stats["latency_s"]["p50"] >= 0.2


def test_failing_calls_are_retried_then_raise():
    with MockServer(error_rate=1.0) as url:
        router = Router([url], "mock-conductor", 0.0, 32, retries=2, backoff=0.0)
        with pytest.raises(LLMFailure, match="InternalServerError after 2 retries"):
            asyncio.run(router.call([HumanMessage("q")], "conductor"))
    stats = router.accounting.summary()
    assert (
        stats["by_role"]["conductor"]["retries"] == 2
        and stats["by_role"]["conductor"]["failures"] == 1
    )
    assert stats["errors"] == {"InternalServerError": 2}


def test_aimd_halves_on_errors_and_spikes_and_grows_when_healthy():
    async def go():
        limiter = Limiter(32, adaptive=True, window=4)
        assert limiter.limit == 8
        for _ in range(8):
            await limiter.observe(1.0)
        assert limiter.limit == 10  # +1 per 4 healthy calls
        await limiter.observe(None)
        assert limiter.limit == 5  # halved on an error
        await limiter.observe(5.0)  # > 2 x median latency
        assert limiter.limit == 2
        fixed = Limiter(32)
        await fixed.observe(None)
        assert fixed.limit == 32

    asyncio.run(go())


@pytest.mark.parametrize("constrain", ["auto", "off"])
def test_every_methods_writer_gets_the_repetition_controls_grammars_only_when_constrained(
    monkeypatch, constrain
):
    # The server's kind decides the fields the controls go in, for every method (the template
    # baselines included, which have no grammar setting); --constrain off only stops grammars.
    from agents import llm
    from graph.servers import Endpoints, routers
    from graph.settings import DocumentSettings, TemplateSettings

    monkeypatch.setattr(llm, "grammar_style", lambda url, timeout=5.0: "llama.cpp")
    controls = {"repeat_penalty": 1.1, "dry_multiplier": 0.8, "min_p": 0.05}
    for settings in (
        TemplateSettings(base_url="http://x/v1", model="m"),
        DocumentSettings(base_url="http://x/v1", model="m", constrain=constrain),
    ):
        endpoints = Endpoints.resolve(settings)
        conductor, writer = routers(settings, endpoints, None)
        [endpoint] = writer.endpoints
        assert writer.extra_body(endpoint) == {"max_tokens": 512, **controls}, settings
        assert conductor.extra_body(conductor.endpoints[0]) == {"max_tokens": conductor.max_tokens}
        constrained = isinstance(settings, DocumentSettings) and constrain == "auto"
        assert writer.grammars == conductor.grammars == constrained
        wanted = "llama.cpp" if constrained else "none"
        assert endpoints.grammar_styles() == {"conductor": [wanted], "expert": [wanted]}
