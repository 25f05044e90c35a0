"""Every sentence a model reads comes from a prompt file or prompts/fragments.yaml, never from
Python.

Each prompt file and fragment is replaced by «its name» and its placeholders; documents then go
through every path (text protocol with experts, its fallback, the structured protocol, a template
baseline). Every message the models receive must be built from those markers, and every other word
in it must come from the domain file or from a model's own replies (the stubs below): a sentence
written in Python would bring words from neither.
"""

import re
from dataclasses import replace

import yaml
from conftest import document, final_answer, run_doc

from agents.prompts import FRAGMENTS, GRAMMARS, PROMPTS_DIR, REQUIRED
from graph.baselines.graph import template_prior
from graph.documents.graph import graph

MARK = re.compile(r"«[^»]+»")
NUMBER = re.compile(r"^[\d.,:;()\[\]%-]*$")
WORDS = re.compile(r"[A-Za-z][A-Za-z'-]*")
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def marked(text: str, name: str) -> str:
    """«name» and each placeholder as name=[{name}] (the labels are the marked file's own words)."""
    return f"«{name}» " + " ".join(
        f"{p}=[{{{p}}}]" for p in dict.fromkeys(PLACEHOLDER.findall(text))
    )


def offered(messages, field):
    return re.search(rf"{field}=\[([^\]]*)\]", "\n".join(m.text for m in messages))[1].split("; ")[
        0
    ]


def write_marked_prompts(folder):
    for name in REQUIRED:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(marked((PROMPTS_DIR / name).read_text(), name))
    fragments = yaml.safe_load((PROMPTS_DIR / f"{FRAGMENTS}.yaml").read_text())
    (folder / f"{FRAGMENTS}.yaml").write_text(
        yaml.safe_dump({k: marked(v, k) for k, v in fragments.items()})
    )
    # grammars constrain; they are not read
    assert set(GRAMMARS) <= {p.name for p in PROMPTS_DIR.glob("*.gbnf")}


REPLY = "Quorvex zintaline Plumbrick."  # a vocabulary no prompt or domain file uses
AGAIN = "Zintaline Quorvex again."


def draft(messages) -> str:
    """A first draft that loops (the quality gate sends it back, with its own prompt file); after
    that, a document on the seed keywords that passes."""
    text = "\n".join(m.text for m in messages)
    if "«quality" not in text:
        return f"{REPLY} Doc {len(messages)} " * 30
    keywords = re.search(r"keywords=\[([^\]]*)\]", text)
    return document(f"{keywords[1] if keywords else ''} {REPLY}")


def conductor_fn(messages):
    text = "\n".join(m.text for m in messages)
    if "«structured/" in text:  # a brief: the first option offered of each field
        return (
            f"Category: {offered(messages, 'categories')}\nGenre: {offered(messages, 'genres')}\n"
            f"Audience: {offered(messages, 'audiences')}\nAngle: {offered(messages, 'keywords')} "
            "zintaline quorvex.\nExpert: Zintal Analyst\n"
        )
    if "FAIL" in CTX[1]:
        return "no protocol here"
    last = messages[-1].text
    if "«expert_output»" in last:  # the final answer is the expert's latest text
        text = re.findall(r"«expert_output» name=\[Zintal\] text=\[(.*?)\]", last, re.DOTALL)[-1]
        return final_answer(text, summary="Quorvex summary.", category="banking")
    # First turn: ask for a draft; after the quality check sent it back, ask again.
    return f'Expert Zintal:\n"""\n{AGAIN if "«quality_conductor.md»" in last else REPLY}\n"""'


def expert_fn(messages):
    last = messages[-1].text
    if "«structured/review.md»" in last:
        return "Verdict: revise\nFix: Quorvex plumbrick."
    if AGAIN in last:  # the text protocol's expert, asked again: a document that passes
        return document(f"{REPLY} Plumbrick")
    if REPLY in last:  # its first draft loops
        return f"{REPLY} Doc {len(messages)} " * 30
    return final_answer(draft(messages), summary="Quorvex summary.", category="banking")


CTX = [None, ""]


def test_every_message_a_model_reads_is_built_from_prompt_files_only(ctx, stub_models, tmp_path):
    write_marked_prompts(tmp_path / "marked")
    allowed = set(WORDS.findall((PROMPTS_DIR / "domains" / f"{ctx.domain}.yaml").read_text()))
    allowed |= {
        w
        for name in REQUIRED
        for w in WORDS.findall(" ".join(PLACEHOLDER.findall((PROMPTS_DIR / name).read_text())))
    }
    allowed |= {
        w
        for text in yaml.safe_load((PROMPTS_DIR / f"{FRAGMENTS}.yaml").read_text()).values()
        for w in WORDS.findall(" ".join(PLACEHOLDER.findall(text)))
    }
    base = replace(ctx, prompts_dir=str(tmp_path / "marked"))
    replies = []

    def recorded(fn):
        def respond(messages):
            replies.append(fn(messages))
            return replies[-1]

        return respond

    conductor, expert = stub_models(recorded(conductor_fn), recorded(expert_fn))
    runs = [
        ("text", graph, replace(base, protocol="text", out_dir=str(tmp_path / "text"))),
        ("text-FAIL", graph, replace(base, protocol="text", out_dir=str(tmp_path / "fallback"))),
        (
            "structured",
            graph,
            replace(base, protocol="structured", reviews=1, out_dir=str(tmp_path / "structured")),
        ),
        ("template-prior", template_prior, replace(base, out_dir=str(tmp_path / "prior"))),
    ]
    for label, g, c in runs:
        CTX[:] = [c, label]
        for i in range(2):  # the second document also sees the memory of the first
            run_doc(g, {"index": i}, c)

    conversations = conductor.seen + expert.seen
    for reply in replies:
        allowed |= set(WORDS.findall(reply))
    used = set()
    for conversation in conversations:
        for message in conversation:
            if message.type == "ai":
                continue  # the model's own earlier turn
            marks = MARK.findall(message.text)
            assert marks, f"a message built without any prompt file: {message.text[:200]!r}"
            used |= set(marks)
            stray = {w for w in WORDS.findall(MARK.sub(" ", message.text)) if w not in allowed}
            assert not stray, (
                f"words from Python, not from a prompt file: {sorted(stray)[:10]} in "
                f"{message.text[:300]!r}"
            )
    # The paths above read most of the files: the check is not vacuous.
    assert {
        "«task.md»",
        "«round»",
        "«expert_turn»",
        "«expert_output»",
        "«fallback.md»",
        "«structured/write.md»",
        "«structured/review.md»",
        "«templates/prior.md»",
        "«quoted»",
        "«recall_line»",
        "«quality.md»",
        "«quality_conductor.md»",
        "«quality_repetition»",
    } <= used
