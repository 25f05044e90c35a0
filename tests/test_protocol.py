import pytest

from agents.protocol import MIN_DOCUMENT_CHARS, parse_turn

DOC = "The central bank raised its policy rate by 50 basis points. " * 6

CASES = [
    # (reply, kind, expert names or final category)
    (
        'Expert Financial Analyst:\n"""\nExplain deposit betas.\n"""',
        "experts",
        ["Financial Analyst"],
    ),
    (
        'Plan first.\n\nExpert Analyst:\n"""\nA\n"""\n\nExpert Risk Manager (Basel):\n"""\nB\n"""',
        "experts",
        ["Analyst", "Risk Manager (Basel)"],
    ),
    ('**Expert Editor**:\n"""\nTighten the draft.\n"""', "experts", ["Editor"]),
    ("Expert Statistician:\n```\nCheck the hazard ratio.\n```", "experts", ["Statistician"]),
    ('Expert Editor:\n"""\nunterminated instruction runs to the end', "experts", ["Editor"]),
    (
        f'>> FINAL ANSWER:\n"""\n{DOC}\n"""\nSummary: Rates rose.\nCategory: Monetary Policy',
        "final",
        "monetary policy",
    ),
    (f">> final answer:\n{DOC}\nSummary: Rates rose.\nCategory: rates", "final", "rates"),
    (f'>> FINAL ANSWER:\n"""\n{DOC}\n"""', "final", "uncategorized"),
    (f">> FINAL ANSWER:\nHere is the document:\n\n{DOC}\nCategory: rates", "final", "rates"),
    (
        f'Expert Editor:\n"""\nx\n"""\n>> FINAL ANSWER:\n"""\n{DOC}\n"""\nSummary: s\nCategory: c',
        "final",
        "c",
    ),
    ('>> FINAL ANSWER:\n"""\ntoo short\n"""\nSummary: s\nCategory: c', "error", None),
    ("I think the document should discuss banks.", "error", None),
    ('Expert Editor:\n"""\n\n"""', "error", None),
    ("", "error", None),
    ("expert editor: lowercase is prose, not a call", "error", None),
]


@pytest.mark.parametrize("reply,kind,expected", CASES)
def test_parse_turn_table(reply, kind, expected):
    turn = parse_turn(reply)
    parsed = "final" if turn.final else "experts" if turn.calls else "error"
    assert parsed == kind
    assert bool(turn.error) == (kind == "error")
    if kind == "experts":
        assert [c.name for c in turn.calls] == expected
        assert all(c.instruction for c in turn.calls)
    elif kind == "final":
        assert turn.final.category == expected
        assert len(turn.final.text) >= MIN_DOCUMENT_CHARS
        assert ">> FINAL" not in turn.final.text and "Summary:" not in turn.final.text
    else:
        assert turn.error


def test_chat_preamble_is_not_part_of_the_document():
    turn = parse_turn(f">> FINAL ANSWER:\nSure! Here is the document:\n\n{DOC}")
    assert turn.final.text.startswith("The central bank")


def test_missing_summary_is_derived_and_marked_guessed():
    turn = parse_turn(f'>> FINAL ANSWER:\n"""\n{DOC}\n"""')
    assert turn.final.summary == "The central bank raised its policy rate by 50 basis points."
    assert set(turn.final.guessed) == {"summary", "category"}


def test_expert_calls_are_capped_per_turn():
    reply = "\n".join(f'Expert E{i}:\n"""\ntask {i}\n"""' for i in range(6))
    turn = parse_turn(reply, max_calls=4)
    assert [c.name for c in turn.calls] == ["E0", "E1", "E2", "E3"]
    assert turn.notes
