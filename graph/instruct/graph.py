"""Builds the MetaSynth-Instruct graph: one run = one instruction derived from a corpus document and
evolved, by the same conductor and fresh-eyes experts as the documents
(nodes: nodes.py).

    source -> offer -> plan --(plan)--> derive -> propose -> evolve -> distinct --(distinct)-> check
                         |                  |        ^                    |                      |
                         |                  |        |                    '--(paraphrase)--------+
                         |                  |        '------------(steps left: --evolve-rounds)--+
                         |                  |                         answer <--(no steps left)--'
                         |                  '--(no instruction)--> reject
                         '--(unusable plan: again; errors)--> fallback -> derive
    answer --(response)--> gate --(novel)--> END
                             |--(too similar, budget left)--> replan -> plan
                             '--(budget spent)--> reject
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from graph.instruct import nodes as n
from graph.instruct.state import InstructInput, InstructState
from graph.settings import InstructSettings


def build_graph():
    builder = StateGraph(InstructState, context_schema=InstructSettings, input_schema=InstructInput)
    for name in (
        "source",
        "offer",
        "plan",
        "fallback",
        "derive",
        "propose",
        "evolve",
        "distinct",
        "check",
        "answer",
        "gate",
        "replan",
        "reject",
    ):
        builder.add_node(name, getattr(n, name))
    builder.add_edge(START, "source")
    builder.add_edge("source", "offer")
    builder.add_edge("offer", "plan")
    builder.add_conditional_edges("plan", n.after_plan, ["derive", "plan", "fallback"])
    builder.add_edge("fallback", "derive")
    builder.add_conditional_edges("derive", n.after_derive, ["propose", "answer", "reject"])
    builder.add_edge("propose", "evolve")
    builder.add_edge("evolve", "distinct")
    builder.add_conditional_edges("distinct", n.after_distinct, ["check", "propose", "answer"])
    builder.add_conditional_edges("check", n.after_check, ["propose", "answer"])
    builder.add_conditional_edges("answer", n.after_answer, ["gate", "reject"])
    builder.add_conditional_edges("gate", n.after_gate, [END, "replan", "reject"])
    builder.add_edge("replan", "plan")
    builder.add_edge("reject", END)
    return builder.compile(name="MetaSynth-Instruct")


# What langgraph.json exposes: compiled without a checkpointer, as the dev server requires.
graph = build_graph()
