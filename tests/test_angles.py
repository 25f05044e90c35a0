"""benchmarks.angles: which brief angles count as garbled."""

import json

import pytest

from benchmarks.angles import count, garbled

KEYWORDS = ["sovereign wealth fund", "delirium in the elderly", "MiFID II"]


@pytest.mark.parametrize(
    "angle,reason",
    [
        ("MiFID II", None),  # the keyword alone
        ("MiFID II, ", None),
        ("sovereign wealth fund: why Norway's rule caps spending", None),
        ("MiFID II in the 2018 annual reports of 3 brokers", None),  # 3 numbers would count
        ("sovereign wealth fund inance 2023", "fragment"),  # "Finance" less its capital
        ("MiFID II urned 2020-2021-2022", "fragment"),
        ("MiFID II in 2009; 02; 2009; 02; 03", "numbers"),
        ("delirium in the elderly in in in in in", "repeated"),
        ("bonds in general", None),  # no keyword: not this measure's business
    ],
)
def test_garbled(angle, reason):
    assert garbled(angle, KEYWORDS) == reason


def test_count_reads_briefs_and_skips_documents_without_one(tmp_path):
    records = [
        {"id": f"finance-{i:06d}", "text": "A document.", "seeds": KEYWORDS, "brief": brief}
        for i, brief in enumerate(
            [{"angle": "MiFID II"}, {"angle": "MiFID II xtr xtr"}, None, {"angle": "MiFID II ia"}]
        )
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert count(path) == {
        "briefs": 3,
        "garbled": 1,
        "share": 0.333,
        "fragment": 1,
        "numbers": 0,
        "repeated": 0,
    }
    assert count(path, first=1)["briefs"] == 1
