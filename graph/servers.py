"""The servers a run talks to: the embedded one started or the given ones checked (`serve`), where
each role's calls go and what each server takes (`Endpoints`), and the routers built on them."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field

from agents import llm
from agents.calls import Accounting, Router, Sampling
from core.errors import UserError
from core.rundir import RunDir


def urls(value: str) -> list[str]:
    return [u.strip() for u in value.split(",") if u.strip()]


def embedded_model(base_url: str, model: str) -> str:
    """The model name to run with: a served model's as given; without a base URL the embedded server
    runs, and `model` picks one of the models shipped in PyPI packages (embedded:NAME). One that is
    not installed is one line with the pip command, before anything starts."""
    if base_url:
        return model
    from agents.embedded import MODELS, gguf, model_name

    if model and not model.startswith("embedded") and model not in MODELS:
        raise UserError(
            f"--model {model} needs --base-url (without one, --model takes embedded:NAME)"
        )
    name = model_name(model or "")
    gguf(name)
    return name


@dataclass
class Endpoints:
    """Where each role's calls go, and each server's kind (agents.llm.grammar_style: how it takes
    a grammar and the repetition controls; "" = neither): resolved once per run, after the servers
    are up. `grammars`: whether protocol turns send their grammar (--constrain)."""

    conductor: list[str]
    conductor_model: str
    writer: list[str]
    writer_model: str
    styles: dict[str, str] = field(default_factory=dict)
    grammars: bool = True

    @classmethod
    def resolve(cls, settings, embedded_url: str = "") -> Endpoints:
        base = urls(settings.base_url) or [embedded_url]
        if embedded_url and not settings.base_url:
            model = embedded_model("", settings.model)
        else:
            model = settings.model or (llm.check_server(base[0]) or ["default"])[0]
        writer = urls(settings.expert_base_url) or base
        if settings.expert_model:
            writer_model = settings.expert_model
        elif settings.expert_base_url:  # another server: the first model it serves
            writer_model = (llm.check_server(writer[0]) or ["default"])[0]
        else:
            writer_model = model
        styles = {url: llm.grammar_style(url) for url in {*base, *writer}}
        grammars = getattr(settings, "constrain", "off") != "off"  # a baseline has no grammar
        return cls(base, model, writer, writer_model, styles, grammars)

    def sampling_sent(self, sampling: Sampling) -> dict[str, dict]:
        """The repetition controls the writers' servers get, by server kind, for the manifest."""
        kinds = {self.styles[url] for url in self.writer}
        return {kind or "none": sampling.fields(kind) for kind in kinds}

    def grammar_styles(self) -> dict[str, list[str]]:
        """How each role's servers take the protocol grammars ("none": unconstrained)."""
        return {
            role: sorted({(self.styles[url] if self.grammars else "") or "none" for url in urls})
            for role, urls in (("conductor", self.conductor), ("expert", self.writer))
        }

    def check_grammars(self, grammars: dict[str, str]) -> None:
        """Every grammar through the parser of every server that takes one
        (agents.llm.check_grammars): a refused one is one line naming the file."""
        served = {(url, self.conductor_model) for url in self.conductor}
        served |= {(url, self.writer_model) for url in self.writer}
        for url, model in sorted(served):
            if self.styles[url] and self.grammars and grammars:
                llm.check_grammars(url, model, self.styles[url], grammars)


def writer_sampling(settings) -> Sampling:
    return Sampling(
        repeat_penalty=settings.repeat_penalty,
        dry_multiplier=settings.dry_multiplier,
        min_p=settings.min_p,
    )


def routers(settings, endpoints: Endpoints, accounting: Accounting) -> tuple[Router, Router]:
    """The conductor's and the writers' routers. Only the writers get the repetition controls: the
    conductor copies its experts' text into its final answer, which a DRY penalty would fight."""
    common = {
        "max_inflight": settings.max_inflight,
        "adaptive": settings.adaptive,
        "timeout": settings.request_timeout,
        "retries": settings.max_retries,
        "accounting": accounting,
        "grammars": endpoints.grammars,
    }
    conductor = Router(
        endpoints.conductor,
        endpoints.conductor_model,
        getattr(settings, "temperature", 0.0),
        getattr(settings, "max_tokens", settings.expert_max_tokens),
        **common,
    )
    writer = Router(
        endpoints.writer,
        endpoints.writer_model,
        settings.expert_temperature,
        settings.expert_max_tokens,
        sampling=writer_sampling(settings),
        **common,
    )
    for router in (conductor, writer):
        for endpoint in router.endpoints:
            endpoint.grammar_style = endpoints.styles.get(endpoint.base_url, "")
    return conductor, writer


def serve(stack: ExitStack, settings, slots: int, rundir: RunDir, console) -> str:
    """Check the servers given (a bad one ends the run in one line), or start the embedded one for
    the length of `stack`, one slot per item in flight, its log in the run directory; its URL."""
    for url in urls(settings.base_url):
        llm.check_server(url, settings.model)
    for url in urls(settings.expert_base_url):
        llm.check_server(url, settings.expert_model or None)
    if settings.base_url:
        return ""
    from agents.embedded import EmbeddedServer

    name = embedded_model("", settings.model)
    console.log(f"starting the embedded model server ({name}, {max(slots, 1)} slots)")
    server = EmbeddedServer(model=name, log_path=rundir.server_log, slots=max(slots, 1))
    return stack.enter_context(server).base_url
