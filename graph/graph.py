"""Builds the MetaSynth document graph (one document per run).

    seed -> recall -> conductor --(expert calls)--> expert x N (parallel, Send) -> relay -> conductor
                         |------(malformed turn)--> protocol_error -> conductor
                         |------(too many errors / round cap)--> fallback -> gate
                         '------(final answer)--> gate --(novel)--> END (committed)
                                                       --(too similar, budget left)--> revise -> conductor | fallback
                                                       '--(budget spent / no document)--> reject -> END
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from graph import baselines, nodes
from graph.configuration import Context
from graph.state import DocInput, DocState, ExpertTask


def after_conductor(state: DocState, runtime: Runtime[Context]):
    ctx = runtime.context
    if state.get("draft"):
        return "gate"
    if state.get("calls") and state.get("round", 0) < ctx.max_rounds:
        return [Send("expert", {"order": i, **call}) for i, call in enumerate(state["calls"])]
    if state.get("protocol_errors", 0) >= ctx.max_protocol_errors or state.get("round", 0) >= ctx.max_rounds:
        return "fallback"
    return "protocol_error"


def after_gate(state: DocState, runtime: Runtime[Context]) -> str:
    verdict = state.get("verdict", {})
    if verdict.get("accepted"):
        return END
    if state.get("draft") and state.get("revisions", 0) < runtime.context.max_revisions:
        return "revise"
    return "reject"


def after_revise(state: DocState, runtime: Runtime[Context]) -> str:
    if state.get("source") == "conductor" and state.get("round", 0) < runtime.context.max_rounds:
        return "conductor"
    return "fallback"


def build_graph():
    builder = StateGraph(DocState, context_schema=Context, input_schema=DocInput)
    builder.add_node("seed", nodes.seed)
    builder.add_node("recall", nodes.recall)
    builder.add_node("conductor", nodes.conductor)
    builder.add_node("expert", nodes.expert, input_schema=ExpertTask)
    builder.add_node("relay", nodes.relay)
    builder.add_node("protocol_error", nodes.protocol_error)
    builder.add_node("fallback", nodes.fallback)
    builder.add_node("gate", nodes.gate)
    builder.add_node("revise", nodes.revise)
    builder.add_node("reject", nodes.reject)

    builder.add_edge(START, "seed")
    builder.add_edge("seed", "recall")
    builder.add_edge("recall", "conductor")
    builder.add_conditional_edges("conductor", after_conductor, ["expert", "gate", "fallback", "protocol_error"])
    builder.add_edge("expert", "relay")
    builder.add_edge("relay", "conductor")
    builder.add_edge("protocol_error", "conductor")
    builder.add_edge("fallback", "gate")
    builder.add_conditional_edges("gate", after_gate, [END, "revise", "reject"])
    builder.add_conditional_edges("revise", after_revise, ["conductor", "fallback"])
    builder.add_edge("reject", END)
    return builder.compile(name="MetaSynth")


# What langgraph.json exposes: compiled without a checkpointer, as the dev server requires.
graph = build_graph()


def graph_for(method: str):
    """The compiled graph that writes documents by `method` (the baselines live in graph/baselines.py)."""
    return {"metasynth": graph, "template": baselines.template, "template-prior": baselines.template_prior,
            "template-icl": baselines.template_icl}[method]
