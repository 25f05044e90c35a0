"""Grammars: the portable-subset check, rendering, the fields each server takes, and the real
parsers."""

import asyncio

import pytest
from conftest import scripted

from agents.calls import LLAMA_CPP, Router, request_fields
from agents.grammar import GrammarError, check
from agents.llm import vllm_style
from agents.prompts import (
    GRAMMARS,
    PROMPTS_DIR,
    grammar_samples,
    literal,
    load_prompts,
    render_grammar,
    starting_at,
)
from core.errors import UserError

FINANCE = load_prompts("finance")


def shipped(name: str) -> str:
    """A shipped grammar as it is sent: the brief's choice rules filled with real domain options."""
    domain = FINANCE.domain
    return render_grammar(
        FINANCE.texts[name],
        {
            "category": domain.categories[:4],
            "genre": domain.genres[:4],
            "audience": domain.audiences[:4],
            "keyword": domain.keywords[:4],
        }
        if name == "brief.gbnf"
        else {},
    )


BAD = [
    # (grammar, line of the error, words of the message)
    ('root ::= "a" | ', 1, "empty alternative"),
    ('root ::= "a"\nother ::= ( | "b")', 2, "empty alternative"),
    ("root ::= [a\\-z]", 1, "unsupported escape \\-"),
    ('root ::= "x"{1,5000}', 1, "over 2000"),
    ('root ::= "x"{5,2}', 1, "below the minimum"),
    ("root ::= item\nitem ::= missing-rule", 2, "'missing-rule' is used but never defined"),
    ('start ::= "a"', None, "no 'root"),
    ('root: "a" | "b"', 1, "expected '::='"),
    ('"just a string"', 1, "expected a rule name"),
    ('root ::= "a"\nmy_rule ::= "b"', 2, "expected '::='"),
    ('root ::= "unterminated', 1, "unterminated string"),
    ("root ::= [abc", 1, "unterminated character class"),
    ('root ::= ("a" "b"', 1, "expected ')'"),
    ('root ::= "a"\nroot ::= "b"', 2, "defined twice"),
    ('root ::= "\\q"', 1, "unsupported escape"),
    ("# only a comment\n", None, "no 'name ::= ...' rule"),
]


@pytest.mark.parametrize("text,line,words", BAD)
def test_a_bad_grammar_is_refused_naming_the_line(text, line, words):
    with pytest.raises(GrammarError) as e:
        check(text, "my.gbnf")
    message = str(e.value)
    assert words in message and "\n" not in message
    assert message.startswith(f"my.gbnf:{line}: " if line else "my.gbnf: ")


def test_shipped_grammars_pass_and_multiline_rules_are_gbnf():
    for name, provided in GRAMMARS.items():
        rules = check(FINANCE.texts[name], name, provided)
        # filled-in rules stay undefined in the file
        assert "root" in rules and not rules & set(provided)
        assert "root" in check(shipped(name), name)
    multi = (
        'root ::= a |\n  b\na ::= ("x"\n  | "y")+ [^\\n\\"]? .\nb ::= "\\x41\\u00e9"{2} [0-9]{1,}'
    )
    assert check(multi, "multi") == {"root", "a", "b"}


def test_render_adds_only_undefined_rules_and_escapes_literals():
    text = render_grammar(
        'root ::= category " " genre\ngenre ::= "pinned"',
        {"category": ['say "hi"', "a\\b"], "genre": ["x"]},
    )
    assert 'category ::= "say \\"hi\\"" | "a\\\\b"' in text and text.count("genre ::=") == 1
    check(text, "rendered")
    # no options: any short phrase
    assert check(render_grammar("root ::= category", {"category": []}), "free")


def test_prompt_loading_refuses_an_invalid_user_grammar(tmp_path):
    (tmp_path / "brief.gbnf").write_text(
        (PROMPTS_DIR / "brief.gbnf").read_text().replace("{2,14}", "{2,9999}")
    )
    with pytest.raises(GrammarError, match=r"brief.gbnf:\d+: repetition count over 2000"):
        load_prompts("finance", tmp_path)


def test_request_fields_per_server():
    g = 'root ::= "a"'
    assert request_fields("llama.cpp", g) == {"grammar": g}
    assert request_fields("vllm", g) == {"structured_outputs": {"grammar": g}}
    assert request_fields("vllm-guided", g) == {"guided_grammar": g}
    assert request_fields("", g) == {} and request_fields("vllm", "") == {}
    assert [
        vllm_style(v) for v in ("0.12.0", "0.10.2", "0.10.1.1", "0.6.3", "0.5.0", "1.0.0rc1")
    ] == ["vllm", "vllm", "vllm-guided", "vllm-guided", "", "vllm"]


def test_router_merges_the_grammar_into_the_clients_extra_body():
    chat = scripted(lambda m: "ok")
    for style, expected in (("llama.cpp", {"max_tokens": 99, "grammar": "G"}), ("", None)):
        router = Router(["stub://x"], "m", 0.0, 99, grammar_style=style)
        router.client = lambda endpoint: chat
        asyncio.run(router.call([], "conductor", "G"))
        assert chat.extra[-1] == expected
    asyncio.run(router.call([], "conductor"))
    assert chat.extra[-1] is None


@pytest.mark.slow
def test_shipped_grammars_parse_in_the_llama_cpp_server():
    """llama.cpp's own server (the embedded one) accepts every shipped grammar, the instruction
    graph's included, and answers one it cannot parse with one line naming the file; it keeps
    serving after a refusal."""
    from agents.embedded import EmbeddedServer
    from agents.instruction import GRAMMARS as INSTRUCT_GRAMMARS
    from agents.instruction import load_instruct_prompts
    from agents.llm import check_grammars

    instruct = load_instruct_prompts("finance")
    every = {
        **grammar_samples(FINANCE.texts, GRAMMARS),
        **grammar_samples(instruct.texts, INSTRUCT_GRAMMARS),
    }
    assert len(every) == len(GRAMMARS) + len(INSTRUCT_GRAMMARS) == 8
    every["consult only"] = starting_at(every["conductor.gbnf"], "calls")
    with EmbeddedServer(slots=1) as server:
        check_grammars(server.base_url, server.model, LLAMA_CPP, every)
        # the second passes our check
        for bad in ('root ::= "a" | undefined-rule', 'root ::= root "a" | "b"'):
            with pytest.raises(
                UserError, match=r"^mine.gbnf: the server at .* refused the grammar \(.*\)$"
            ):
                check_grammars(server.base_url, server.model, LLAMA_CPP, {"mine.gbnf": bad})
        check_grammars(
            server.base_url, server.model, LLAMA_CPP, {"brief.gbnf": every["brief.gbnf"]}
        )


def test_shipped_grammars_compile_in_xgrammar():
    """vLLM's grammar engine compiles every shipped grammar (skipped where xgrammar is not
    installed)."""
    from agents.instruction import GRAMMARS as INSTRUCT_GRAMMARS
    from agents.instruction import load_instruct_prompts

    xgr = pytest.importorskip("xgrammar")
    for name in GRAMMARS:
        xgr.Grammar.from_ebnf(shipped(name))
    for text in grammar_samples(load_instruct_prompts("finance").texts, INSTRUCT_GRAMMARS).values():
        xgr.Grammar.from_ebnf(text)
    with pytest.raises(RuntimeError, match='Rule "undefined-rule" is not defined'):
        xgr.Grammar.from_ebnf('root ::= "a" | undefined-rule')


def test_a_grammar_can_start_at_one_of_its_rules():
    conductor = shipped("conductor.gbnf")
    consult = starting_at(conductor, "calls")
    assert consult.startswith("root ::= calls\n") and check(consult, "consult") >= {
        "calls",
        "final",
    }
    # a user's grammar that defines no such rule is left as it is
    assert starting_at(conductor, "nowhere") == conductor


def test_literal_round_trip():
    assert literal('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
