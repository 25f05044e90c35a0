"""The quality gate's rules on real domain text: what share of real documents each rule flags.

    .venv/bin/python -m benchmarks.quality_real      # needs ../shared/data

PubMedQA abstracts are their contexts and conclusion, one paragraph each; FPB lines are sentences.
Also prints how often our repetition verdict differs from datatrove's GopherRepetitionFilter (0).
"""

from __future__ import annotations

import json
from collections import Counter

from datatrove.data import Document
from datatrove.pipeline.filters import GopherRepetitionFilter

from memory import quality
from memory.embedder import default_embedder
from train.tasks import DATA


def datatrove_passes(texts: list[str]) -> list[bool]:
    """datatrove's own GopherRepetitionFilter (its defaults) on each text: an implementation
    independent of memory/quality.py's figures. It returns True, or (False, reason)."""
    gopher = GopherRepetitionFilter()
    return [gopher.filter(Document(text=text, id=str(i))) is True for i, text in enumerate(texts)]


def real_texts() -> dict[str, list[str]]:
    rows = [
        json.loads(line)
        for line in (DATA / "biomed" / "pubmedqa_pqal.jsonl").read_text().splitlines()
    ]
    fpb = [
        json.loads(line)["text"]
        for line in (DATA / "finance" / "fpb.jsonl").read_text().splitlines()
    ]
    return {
        "PubMedQA abstracts": ["\n\n".join([*r["contexts"], r["long_answer"]]) for r in rows],
        "FPB sentences": fpb,
    }


def main() -> None:
    talk = quality.Talk(default_embedder())
    for name, texts in real_texts().items():
        rules, details, disagree, flagged = Counter(), Counter(), 0, 0
        for text, passes in zip(texts, datatrove_passes(texts)):
            checked = quality.check(text, talked=talk(text))
            flagged += not checked.passed
            rules.update(checked.flags)
            details.update(checked.figures["task_text"])
            if checked.figures["repetition"]:
                details[checked.figures["repetition"]] += 1
            disagree += passes != (checked.figures["repetition"] is None)
        print(
            f"{name}: {len(texts)} documents, {flagged} flagged ({flagged / len(texts):.1%}); by "
            f"rule {dict(rules)}; details {dict(details)}; repetition verdicts unlike datatrove's: "
            f"{disagree}"
        )


if __name__ == "__main__":
    main()
