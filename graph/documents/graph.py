"""Builds the MetaSynth document graph (one document per run), for either conductor protocol.

The free-text protocol of the paper (`protocol: text`):

    seed -> recall -> conductor --(expert calls)--> expert x N (parallel Send) -> relay -> conductor
                         |------(malformed turn)--> protocol_error -> conductor
                         |------(too many errors / round cap)--> fallback -> gate
                         '------(final answer)--> gate
    gate --(novel)--> END (committed)
       |--(too similar, budget left)--> revise -> conductor | fallback
       '--(budget spent / no document)--> reject -> END

The structured protocol for small models (`protocol: structured`, structured.py):

    seed -> offer -> plan --(brief)--> write -> review --(keep)--> gate
                        |                            '--(revise)--> rewrite -> gate
                        '--(unusable brief: again; errors / round cap)--> fallback -> gate
    (gate as above; too similar -> replan -> plan)
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from graph.documents import nodes, structured, text
from graph.documents.state import DocInput, DocState, ExpertTask
from graph.settings import DocumentSettings
from graph.steps import reject


def build_graph():
    builder = StateGraph(DocState, context_schema=DocumentSettings, input_schema=DocInput)
    for node in (nodes.seed, nodes.fallback, nodes.gate, reject):  # both protocols
        builder.add_node(node.__name__, node)
    for node in (text.recall, text.conductor, text.relay, text.protocol_error, text.revise):
        builder.add_node(node.__name__, node)
    for node in (
        structured.offer,
        structured.plan,
        structured.write,
        structured.review,
        structured.rewrite,
        structured.redo,
        structured.replan,
    ):  # the structured protocol
        builder.add_node(node.__name__, node)
    # a Send target: its own input
    builder.add_node("expert", text.expert, input_schema=ExpertTask)

    builder.add_edge(START, "seed")
    builder.add_conditional_edges("seed", nodes.after_seed, ["recall", "offer"])
    builder.add_edge("offer", "plan")
    builder.add_conditional_edges("plan", structured.after_plan, ["write", "plan", "fallback"])
    builder.add_conditional_edges("write", structured.after_write, ["review", "gate"])
    builder.add_conditional_edges("review", structured.after_review, ["rewrite", "gate"])
    builder.add_conditional_edges("rewrite", structured.after_rewrite, ["review", "gate"])
    builder.add_edge("replan", "plan")
    builder.add_edge("redo", "write")
    builder.add_edge("recall", "conductor")
    builder.add_conditional_edges(
        "conductor", text.after_conductor, ["expert", "gate", "fallback", "protocol_error"]
    )
    builder.add_edge("expert", "relay")
    builder.add_edge("relay", "conductor")
    builder.add_edge("protocol_error", "conductor")
    builder.add_edge("fallback", "gate")
    builder.add_conditional_edges(
        "gate", nodes.after_gate, [END, "revise", "replan", "redo", "reject"]
    )
    builder.add_conditional_edges("revise", text.after_revise, ["conductor", "fallback"])
    builder.add_edge("reject", END)
    return builder.compile(name="MetaSynth")


# What langgraph.json exposes: compiled without a checkpointer, as the dev server requires.
graph = build_graph()
