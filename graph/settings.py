"""The settings of each generation graph: one frozen dataclass per graph, composed of shared parts.

A field is at once a command-line flag (core.cli.add_fields: --the-name, its default, its
description as help), a field of LangGraph Studio's settings form (each graph's `context_schema`)
and a key of the run's manifest. Each graph's settings hold exactly the fields it reads:

    DocumentSettings  MetaSynth's documents (graph/documents): Common, Servers, Conductor, Writers,
                      Gate, and how a document is seeded, planned and checked
    TemplateSettings  the template baseline (graph/baselines): Common, Servers, Writers, Gate
    PriorSettings     template-prior: TemplateSettings + recall_k
    IclSettings       template-icl: PriorSettings + seed_docs
    InstructSettings  MetaSynth-Instruct (graph/instruct): Common, Servers, Conductor, Writers and
                      the evolution's own fields

Empty strings mean "the default": no base URL runs the embedded model, no expert model reuses the
conductor's, no out_dir writes to runs/<domain> (an instruction run: to <corpus>-instruct).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from core.cli import out_of_bounds
from core.errors import UserError
from memory.store import DEFAULT_THRESHOLD

PROTOCOLS = ("auto", "text", "structured")
SERVERS, LOOP = "servers", "the loop"  # the command line's argument groups
# An evolution step this similar to the previous version is a paraphrase (all-MiniLM-L6-v2 cosine;
# docs/instruct.md has the similarities of kept steps); one this far from it is another instruction.
DEFAULT_PARAPHRASE_THRESHOLD = 0.97
DEFAULT_DRIFT_THRESHOLD = 0.5
# The float settings' meaningful ranges, [low, high] ((low, high] where marked): a server takes a
# negative temperature or min_p 2 without a word. (The novelty threshold has its own check in each
# command, as a cosine similarity.)
RANGES = {
    "temperature": (0.0, math.inf, False),
    "expert_temperature": (0.0, math.inf, False),
    "repeat_penalty": (0.0, math.inf, True),
    "dry_multiplier": (0.0, math.inf, False),
    "min_p": (0.0, 1.0, False),
    "min_expert_share": (0.0, 1.0, False),
}


def check_ranges(settings: object) -> None:
    """One line (UserError) for the first float setting outside its range, NaN included: the
    command line's own bounds (core.cli.out_of_bounds), for settings made in Python too."""
    for name, bounds in RANGES.items():
        value = getattr(settings, name, None)
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{flag} must be a number, got {value!r}")
        if why := out_of_bounds(float(value), *bounds):
            raise UserError(f"{flag} {why}, got {float(value)!r}")


def setting(default, doc: str, **cli):
    """A field: its default and its description, which Studio shows and --help prints. `cli`: how
    the command line spells it (core.cli.add_fields: flag, group, choices, positive, append,
    cli)."""
    return field(default=default, metadata={"description": doc, **cli})


def as_dict(settings) -> dict:
    return asdict(settings)


@dataclass(frozen=True, kw_only=True)
class Common:
    """Every graph: the domain, the run directory, the prompts, the seed, the token counter."""

    domain: str = setting("finance", "Domain vocabulary: prompts/domains/<domain>.yaml.")
    out_dir: str = setting(
        "",
        "Run directory for the set and its memory/ (default runs/<domain>; instructions: "
        "<corpus>-instruct).",
        flag="--out",
    )
    prompts_dir: str = setting(
        "",
        "Folder whose prompt files override prompts/ (same names).",
        group=LOOP,
        flag="--prompts",
    )
    seed: int = setting(
        0,
        "Random seed: item i of a run draws from its own stream, seeded by (seed, i).",
        group=LOOP,
    )
    tokenizer: str = setting(
        "embedded",
        "Tokenizer that counts document tokens: 'embedded' (SmolLM2) or a local path.",
        group="budget",
    )


@dataclass(frozen=True, kw_only=True)
class Servers:
    """Where the models run and how calls to them are capped and retried."""

    base_url: str = setting(
        "",
        "OpenAI-compatible /v1 URL(s) of the conductor's server, comma-separated for replicas; "
        "empty = the embedded model.",
        group=SERVERS,
        append=True,
    )
    model: str = setting(
        "",
        "Model name as the server knows it; empty = the first it serves. Without a base URL, "
        "embedded:NAME picks an embedded model (smollm2-135m-instruct, the default; "
        "qwen2.5-coder-0.5b-instruct; qwen2.5-coder-1.5b-instruct: docs/protocol.md).",
        group=SERVERS,
    )
    expert_base_url: str = setting(
        "",
        "Server(s) of the writers (experts, the fallback, a template's writer), comma-separated; "
        "empty = the conductor's.",
        group=SERVERS,
        append=True,
    )
    expert_model: str = setting("", "Model of the writers; empty = the conductor's.", group=SERVERS)
    max_inflight: int = setting(
        32,
        "Requests in flight per endpoint (the cap that keeps a queueing server's latency bounded).",
        group=SERVERS,
        positive=True,
    )
    adaptive: bool = setting(
        False,
        "AIMD: start at a quarter of max_inflight, +1 per 8 healthy calls, halve on errors or "
        "latency spikes.",
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


@dataclass(frozen=True, kw_only=True)
class Conductor:
    """The conductor's turns and the experts it consults."""

    temperature: float = setting(0.8, "Conductor sampling temperature.", group=LOOP)
    max_tokens: int = setting(
        768, "Completion token limit per conductor turn.", group=LOOP, positive=True
    )
    max_rounds: int = setting(
        15,
        "Conductor turns per item (each expert round and each protocol error costs one).",
        group=LOOP,
        positive=True,
    )
    max_protocol_errors: int = setting(
        3, "Unusable conductor turns before the fallback.", group=LOOP, positive=True
    )
    constrain: str = setting(
        "auto",
        "Grammar-constrained protocol turns: 'auto' sends each turn's grammar in the form the "
        "server takes (llama.cpp 'grammar', vLLM 'structured_outputs'; none to a server of "
        "unknown kind), 'off' never.",
        group=LOOP,
        choices=("auto", "off"),
    )
    choices: int = setting(
        4,
        "Options the memory offers the conductor (the least covered so far): categories, genres "
        "and audiences of a document, or types of an instruction.",
        group=LOOP,
        positive=True,
    )
    expert_prompt: str = setting(
        "", "Inline override of prompts/expert.md (every expert's system prompt).", cli=False
    )


@dataclass(frozen=True, kw_only=True)
class Writers:
    """How the writers sample: experts, the fallback, a template's writer."""

    expert_temperature: float = setting(0.9, "Writers' sampling temperature.", group=LOOP)
    expert_max_tokens: int = setting(
        512, "Completion token limit per writer reply.", group=LOOP, positive=True
    )
    repeat_penalty: float = setting(
        1.1,
        "Writers' repetition penalty (llama.cpp repeat_penalty, vLLM repetition_penalty; 1 = "
        "off). Sent only to servers known to take it; chosen by measurement: docs/quality.md.",
        group=LOOP,
        positive=True,
    )
    dry_multiplier: float = setting(
        0.8,
        "Writers' DRY multiplier (llama.cpp only; 0 = off): penalises repeating what the text "
        "already says.",
        group=LOOP,
    )
    min_p: float = setting(
        0.05,
        "Writers' min_p: drop tokens below this share of the likeliest one's probability (0 = "
        "off).",
        group=LOOP,
    )


@dataclass(frozen=True, kw_only=True)
class Gate:
    """What a draft must pass before the corpus takes it, and the corpus's novelty index."""

    quality_gate: str = setting(
        "on",
        "Quality gate, for every method: 'on' sends back drafts that loop, are too short, talk "
        "about the task or miss their keywords (memory/quality.py); 'off' only records the "
        "figures.",
        group=LOOP,
        choices=("on", "off"),
    )
    max_revisions: int = setting(
        2,
        "Times a draft is sent back (refused by a gate) before it goes to rejects.jsonl.",
        group=LOOP,
    )
    index: str = setting(
        "auto",
        "Novelty index: 'flat' (exact), 'ivf' or 'hnsw' (approximate), or 'auto' (exact, then IVF "
        "past 10k documents).",
        group=LOOP,
        choices=("auto", "flat", "ivf", "hnsw"),
    )


# A graph's settings list their parts last-first: a dataclass orders the fields of its bases from
# the last base to the first, so Common's fields (domain, out_dir, ...) come first in forms and
# --help.
@dataclass(frozen=True, kw_only=True)
class TemplateSettings(Gate, Writers, Servers, Common):
    """The template baseline: one fixed prompt with the keywords, one writer, the quality gate."""

    keywords: int = setting(4, "Seed keywords sampled per document.", group=LOOP, positive=True)


@dataclass(frozen=True, kw_only=True)
class PriorSettings(TemplateSettings):
    """template-prior: the fixed prompt after the corpus's most recent documents."""

    recall_k: int = setting(5, "Recent corpus documents shown in the prompt.", group=LOOP)


@dataclass(frozen=True, kw_only=True)
class IclSettings(PriorSettings):
    """template-icl: the fixed prompt after real documents."""

    recall_k: int = setting(5, "Real documents shown in the prompt.", group=LOOP)
    seed_docs: str = setting(
        "", 'JSONL of real documents ({"text": ...} per line) shown as examples.', group=LOOP
    )


@dataclass(frozen=True, kw_only=True)
class DocumentSettings(Gate, Writers, Conductor, Servers, Common):
    """MetaSynth's documents: a conductor plans each one and consults experts who write it."""

    keywords: int = setting(4, "Seed keywords sampled per document.", group=LOOP, positive=True)
    protocol: str = setting(
        "auto",
        "Conductor protocol: 'text' (the paper's free-text turns), 'structured' (a grammar-bounded "
        "brief, then experts write), or 'auto' (structured: the measured choice on every model "
        "tried, docs/protocol.md).",
        group=LOOP,
        choices=PROTOCOLS,
    )
    threshold: float = setting(
        DEFAULT_THRESHOLD,
        "Novelty gate: cosine similarity to the nearest committed document at or above which a "
        "draft is sent back.",
        group=LOOP,
        positive=True,
    )
    recall_k: int = setting(
        5,
        "Documents shown: to MetaSynth's conductor, the nearest committed ones where its task "
        "prompt has {recall} (the text protocol's does; the structured default's does not: "
        "docs/metrics.md); in template-prior's prompt the most recent, in template-icl's real "
        "ones.",
        group=LOOP,
    )
    reviews: int = setting(
        0,
        "Structured protocol: reviews of a draft by a fresh expert, each of which may ask for "
        "one rewrite; 0 (the default, chosen by measurement: docs/metrics.md) skips review.",
        group=LOOP,
    )
    min_expert_share: float = setting(
        0.5,
        "Text protocol: share of the final document (its 8-word runs) that must come verbatim "
        "from the experts' replies; below it a final answer is a protocol error. 0 lets the "
        "conductor write alone.",
        group=LOOP,
    )
    max_experts_per_turn: int = setting(
        4,
        "Text protocol: expert calls honoured per conductor turn (the rest are dropped).",
        group=LOOP,
        positive=True,
    )
    seed_docs: str = setting(
        "",
        'JSONL of real documents ({"text": ...} per line): topic seeds instead of keywords for '
        "MetaSynth, the examples template-icl shows.",
        group=LOOP,
    )
    conductor_prompt: str = setting("", "Inline override of prompts/conductor.md.", cli=False)

    def resolved_protocol(self) -> str:
        """The conductor protocol a run uses: 'auto' is structured, on every server. Measured
        (docs/protocol.md, "Choosing auto"): SmolLM2-135M cannot keep the free-text protocol, and
        on Qwen2.5-Coder-1.5B the structured protocol wrote 10 of 10 finance documents through
        its experts and the text protocol 1 of 10 (the fallback wrote 7)."""
        return "structured" if self.protocol == "auto" else self.protocol


@dataclass(frozen=True, kw_only=True)
class InstructSettings(Writers, Conductor, Servers, Common):
    """MetaSynth-Instruct: instructions derived from a corpus's documents and evolved.
    `out_dir` is the instruction run's directory; `threshold` gates instructions against \
instructions."""

    corpus: str = setting(
        "",
        "Source run directory (its corpus.jsonl) or a corpus JSONL file the instructions are "
        "derived from.",
    )
    max_tokens: int = setting(
        256,
        "Completion token limit per conductor turn (a plan or a move is short).",
        group=LOOP,
        positive=True,
    )
    evolve_rounds: int = setting(
        2, "Evolution steps per instruction (each accepted or rejected).", group=LOOP
    )
    paraphrase_threshold: float = setting(
        DEFAULT_PARAPHRASE_THRESHOLD,
        "Evolution steps at least this similar to the previous version are rejected as "
        "paraphrases.",
        group=LOOP,
        positive=True,
    )
    drift_threshold: float = setting(
        DEFAULT_DRIFT_THRESHOLD,
        "Evolution steps less similar than this to the previous version are rejected as drift.",
        group=LOOP,
    )
    document_chars: int = setting(
        3000,
        "Characters of the source document shown to the conductor and the experts.",
        group=LOOP,
        positive=True,
    )
    threshold: float = setting(
        DEFAULT_THRESHOLD,
        "Novelty gate over instructions: cosine similarity to the nearest committed instruction "
        "at or above which one is sent back.",
        group=LOOP,
        positive=True,
    )
    recall_k: int = setting(5, "Nearest committed instructions shown to the conductor.", group=LOOP)
    max_revisions: int = setting(
        2, "Too-similar replans before an instruction goes to rejects.jsonl.", group=LOOP
    )
    index: str = setting(
        "auto",
        "Novelty index over instructions: 'flat', 'ivf', 'hnsw' or 'auto'.",
        group=LOOP,
        choices=("auto", "flat", "ivf", "hnsw"),
    )

    def directory(self) -> str:
        """`out_dir`, or, when none is set, `instruct_out_dir(corpus)`."""
        return self.out_dir or instruct_out_dir(self.corpus)


def instruct_out_dir(corpus: str) -> str:
    """An instruction run's default directory: the corpus path with `-instruct` (runs/x ->
    runs/x-instruct; runs/x/corpus.jsonl -> runs/x/corpus-instruct). Never the source run
    directory, whose novelty memory holds documents, not instructions."""
    return f"{str(corpus).rstrip('/').removesuffix('.jsonl')}-instruct"


# graph.run's --method: the graph that writes documents, and its settings.
METHODS: dict[str, type] = {
    "metasynth": DocumentSettings,
    "template": TemplateSettings,
    "template-prior": PriorSettings,
    "template-icl": IclSettings,
}
