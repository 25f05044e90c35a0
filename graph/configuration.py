"""Run-scoped settings of the document graph. Every field is editable in LangGraph Studio.

Empty strings mean "the default": no base URL runs the embedded SmolLM2 server, no expert model
reuses the conductor's, no out_dir writes to runs/<domain>.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from memory.store import DEFAULT_THRESHOLD

PROTOCOLS = ("auto", "text", "structured")

# How documents are written: the conductor loop, or a template baseline (graph/baselines.py).
METHODS = ("metasynth", "template", "template-prior", "template-icl")


def setting(default, doc: str, **cli):
    """A field: its default and its description, which Studio shows and the command line's --help prints.
    `cli`: how the command line spells it (core.cli.add_fields: flag, group, choices, positive, append, cli)."""
    return field(default=default, metadata={"description": doc, **cli})


SERVERS, LOOP, BUDGET = "servers", "the loop", "budget"  # the command line's argument groups


@dataclass(kw_only=True)
class Shared:
    """What every generation graph is set with: domain, run directory, servers and models, the
    conductor's and writers' sampling, the novelty gate, rounds and revisions, the seed. Each graph's
    settings add their own fields (Context here; InstructContext for MetaSynth-Instruct)."""

    domain: str = setting("finance", "Domain vocabulary: prompts/domains/<domain>.yaml.")
    out_dir: str = setting(
        "", "Run directory for corpus.jsonl and memory/ (default runs/<domain>).", flag="--out"
    )
    base_url: str = setting(
        "",
        "OpenAI-compatible /v1 URL(s) of the conductor's server, comma-separated for replicas; empty = embedded SmolLM2.",
        group=SERVERS,
        append=True,
    )
    model: str = setting(
        "",
        "Conductor model name as the server knows it; empty = the first it serves. Without a base URL, "
        "embedded:NAME picks an embedded model (smollm2-135m-instruct, the default; qwen2.5-coder-0.5b-instruct; "
        "qwen2.5-coder-1.5b-instruct: docs/protocol.md).",
        group=SERVERS,
    )
    expert_base_url: str = setting(
        "",
        "Server(s) for the experts, comma-separated; empty = the conductor's.",
        group=SERVERS,
        append=True,
    )
    expert_model: str = setting(
        "", "Model for the experts; empty = the conductor's.", group=SERVERS
    )
    temperature: float = setting(0.8, "Conductor sampling temperature.", group=LOOP)
    expert_temperature: float = setting(0.9, "Expert sampling temperature.", group=LOOP)
    repeat_penalty: float = setting(
        1.1,
        "Writers' repetition penalty (llama.cpp repeat_penalty, vLLM repetition_penalty; 1 = off). Sent only to servers known to take it; chosen by measurement: docs/quality.md.",
        group=LOOP,
        positive=True,
    )
    dry_multiplier: float = setting(
        0.8,
        "Writers' DRY multiplier (llama.cpp only; 0 = off): penalises repeating what the text already says.",
        group=LOOP,
    )
    min_p: float = setting(
        0.05,
        "Writers' min_p: drop tokens below this share of the likeliest one's probability (0 = off).",
        group=LOOP,
    )
    max_tokens: int = setting(
        768, "Completion token limit per conductor turn.", group=LOOP, positive=True
    )
    expert_max_tokens: int = setting(
        512, "Completion token limit per expert reply.", group=LOOP, positive=True
    )
    max_inflight: int = setting(
        32,
        "Requests in flight per endpoint (the cap that keeps a queueing server's latency bounded).",
        group=SERVERS,
        positive=True,
    )
    adaptive: bool = setting(
        False,
        "AIMD: start at a quarter of max_inflight, +1 per 8 healthy calls, halve on errors or latency spikes.",
        group=SERVERS,
    )
    request_timeout: float = setting(
        600.0,
        "Seconds before an LLM request is abandoned and retried.",
        group=SERVERS,
        positive=True,
    )
    max_retries: int = setting(
        5,
        "Retries per LLM call (timeouts, 5xx, refused connections, empty replies).",
        group=SERVERS,
    )
    recall_k: int = setting(
        5,
        "Prior documents recalled into the conductor's first message (baselines: recent documents or real examples in the prompt).",
        group=LOOP,
    )
    threshold: float = setting(
        DEFAULT_THRESHOLD,
        "Novelty gate: cosine similarity to the nearest committed document at or above which a draft is sent back.",
        group=LOOP,
        positive=True,
    )
    max_rounds: int = setting(
        15,
        "Conductor turns per document (each expert round and each protocol error costs one).",
        group=LOOP,
        positive=True,
    )
    index: str = setting(
        "auto",
        "Novelty index: 'flat' (exact), 'ivf' or 'hnsw' (approximate), or 'auto' (exact, then IVF past 10k documents).",
        group=LOOP,
        choices=("auto", "flat", "ivf", "hnsw"),
    )
    max_revisions: int = setting(
        2,
        "Times a draft is sent back (too similar, or refused by the quality gate) before it goes to rejects.jsonl.",
        group=LOOP,
    )
    max_protocol_errors: int = setting(
        3,
        "Malformed conductor turns before the fallback (one expert writes the document).",
        group=LOOP,
        positive=True,
    )
    constrain: str = setting(
        "auto",
        "Grammar-constrained protocol turns: 'auto' sends each turn's grammar in the form the server "
        "takes (llama.cpp 'grammar', vLLM 'structured_outputs'; none to a server of unknown kind), 'off' never.",
        group=LOOP,
        choices=("auto", "off"),
    )
    choices: int = setting(
        4,
        "Structured protocol: options the memory offers the conductor for category, genre and audience "
        "(the least covered so far).",
        group=LOOP,
        positive=True,
    )
    tokenizer: str = setting(
        "embedded",
        "Tokenizer that counts document tokens: 'embedded' (SmolLM2) or a local path.",
        group=BUDGET,
    )
    seed: int = setting(0, "Random seed; document i of a run uses seed + i.", group=LOOP)
    expert_prompt: str = setting(
        "", "Inline override of prompts/expert.md (every graph's experts).", cli=False
    )
    prompts_dir: str = setting(
        "",
        "Folder whose prompt files override prompts/ (same names).",
        group=LOOP,
        flag="--prompts",
    )

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(kw_only=True)
class Context(Shared):
    """The document graph's settings: the shared ones, and how a document is seeded, planned,
    written and gated."""

    keywords: int = setting(4, "Seed keywords sampled per document.", group=LOOP, positive=True)
    quality_gate: str = setting(
        "on",
        "Quality gate before the novelty gate, for every method: 'on' sends back drafts that loop, are too short, talk about the task "
        "or miss their keywords (memory/quality.py); 'off' only records the figures.",
        group=LOOP,
        choices=("on", "off"),
    )
    protocol: str = setting(
        "auto",
        "Conductor protocol: 'text' (the paper's free-text turns, for strong models), 'structured' "
        "(a grammar-bounded brief, then experts write and review), or 'auto' (structured: the "
        "measured choice on every model tried, docs/protocol.md).",
        group=LOOP,
        choices=PROTOCOLS,
    )
    reviews: int = setting(
        0,
        "Structured protocol: reviews of a draft by a fresh expert, each of which may ask for one rewrite; 0 (the default, chosen by measurement: docs/metrics.md) skips review.",
        group=LOOP,
    )
    min_expert_share: float = setting(
        0.5,
        "Text protocol: share of the final document (its 8-word runs) that must come verbatim from replies of the experts it consulted; "
        "a final answer below it is a protocol error that costs a round. 0 lets the conductor write alone.",
        group=LOOP,
    )
    max_experts_per_turn: int = setting(
        4,
        "Expert calls honoured per conductor turn (the rest are dropped).",
        group=LOOP,
        positive=True,
    )
    seed_docs: str = setting(
        "",
        'JSONL of real documents ({"text": ...} per line): topic seeds for metasynth, in-context examples for template-icl.',
        group=LOOP,
    )
    conductor_prompt: str = setting("", "Inline override of prompts/conductor.md.", cli=False)
