import json

import numpy as np
import pytest

from core.errors import UserError
from memory.embedder import default_embedder
from memory.store import Memory

TEXTS = [
    "The central bank raised interest rates to fight inflation.",
    "A randomized trial tested a new statin in elderly patients.",
    "Quarterly earnings beat analyst expectations on strong cloud revenue.",
]


@pytest.fixture(scope="module")
def embedder():
    return default_embedder()


def fill(memory, embedder, texts=TEXTS):
    for text in texts:
        assert memory.admit(
            {"text": text, "summary": text[:20], "category": "c"}, embedder.encode([text])[0], 0.99
        ).accepted


def test_admit_commits_with_sequential_ids_and_similarity(tmp_path, embedder):
    memory = Memory(tmp_path, embedder, id_prefix="finance")
    fill(memory, embedder)
    lines = [json.loads(line) for line in (tmp_path / "corpus.jsonl").read_text().splitlines()]
    assert [r["id"] for r in lines] == ["finance-000000", "finance-000001", "finance-000002"]
    assert lines[0]["nearest_similarity"] is None and 0 < lines[1]["nearest_similarity"] < 0.99


def test_gate_rejects_at_the_threshold_and_accepts_just_below(tmp_path, embedder):
    memory = Memory(tmp_path, embedder)
    fill(memory, embedder, TEXTS[:1])
    probe = embedder.encode(["The central bank raised rates to fight high inflation."])[0]
    similarity = memory.nearest(probe, 1)[0][0]
    at = memory.admit({"text": "x"}, probe, threshold=similarity)  # >= threshold: too similar
    assert (
        not at.accepted
        and at.similarity == pytest.approx(similarity)
        and at.nearest["text"] == TEXTS[0]
    )
    assert len(memory) == 1 and len((tmp_path / "corpus.jsonl").read_text().splitlines()) == 1
    below = memory.admit({"text": "x"}, probe, threshold=similarity + 1e-4)
    assert below.accepted and len(memory) == 2


def test_round_trip_loads_the_saved_index(tmp_path, embedder):
    memory = Memory(tmp_path, embedder)
    fill(memory, embedder)
    memory.save_index()
    query = embedder.encode(["statin trial in old patients"])[0]
    again = Memory(tmp_path, embedder)
    assert len(again) == 3 and again.index.ntotal == 3
    assert [r["id"] for _, r in again.nearest(query, 3)] == [
        r["id"] for _, r in memory.nearest(query, 3)
    ]
    assert again.nearest(query, 1)[0][1]["text"] == TEXTS[1]


def test_reload_rebuilds_a_stale_index_and_drops_uncommitted_rows(tmp_path, embedder):
    memory = Memory(tmp_path, embedder)
    fill(memory, embedder, TEXTS[:2])
    memory.save_index()  # index of 2 documents
    fill(memory, embedder, TEXTS[2:])  # a third commit after the save: index.faiss is stale
    # a crash after the embedding, before the line
    with open(tmp_path / "memory" / "embeddings.f32", "ab") as f:
        f.write(np.ones(memory.dim, dtype=np.float32).tobytes())
    again = Memory(tmp_path, embedder)
    assert again.index.ntotal == 3
    assert (tmp_path / "memory" / "embeddings.f32").stat().st_size == 3 * memory.dim * 4


def test_corrupt_corpus_line_is_a_user_error(tmp_path, embedder):
    (tmp_path / "corpus.jsonl").write_text('{"text": "fine"}\n{not json\n')
    with pytest.raises(UserError, match="line 2 is not valid JSON"):
        Memory(tmp_path, embedder)


def test_rejects_never_enter_the_corpus(tmp_path, embedder):
    memory = Memory(tmp_path, embedder)
    memory.reject({"text": "draft", "nearest_similarity": 0.97})
    assert len(memory) == 0 and not (tmp_path / "corpus.jsonl").exists()
    assert json.loads((tmp_path / "rejects.jsonl").read_text())["nearest_similarity"] == 0.97


def test_hnsw_index_by_flag_survives_a_reload(tmp_path, embedder):
    import faiss

    memory = Memory(tmp_path, embedder, index="hnsw")
    fill(memory, embedder)
    assert isinstance(memory.index, faiss.IndexHNSWFlat) and memory.index.ntotal == 3
    probe = embedder.encode(["statin trial in old patients"])[0]
    assert memory.nearest(probe, 1)[0][1]["text"] == TEXTS[1]
    memory.save_index()
    again = Memory(tmp_path, embedder, index="hnsw")
    assert (
        isinstance(again.index, faiss.IndexHNSWFlat)
        and again.nearest(probe, 1)[0][1]["text"] == TEXTS[1]
    )
    assert isinstance(Memory(tmp_path, embedder, index="flat").index, faiss.IndexFlatIP)  # by flag


def test_counts_recent_and_tokens_follow_every_commit_and_a_reload(tmp_path, embedder):
    memory = Memory(tmp_path, embedder)

    def commit(text: str, genre: str, tokens: int) -> None:
        record = {"text": text, "genre": genre, "tokens": tokens}
        assert memory.admit(record, embedder.encode([text])[0], 0.99).accepted

    commit(TEXTS[0], "memo", 10)
    # both counters exist before the next commits: admit must keep them up to date
    assert memory.counts(["genre"]) == {"genre": {"memo": 1}}
    assert memory.counts(["genre"], missing="none") == {"genre": {"memo": 1}}
    commit(TEXTS[1], "memo", 10)
    commit(TEXTS[2], "", 7)
    assert memory.counts(["genre"]) == {"genre": {"memo": 2}}
    assert memory.counts(["genre"], missing="none") == {"genre": {"memo": 2, "none": 1}}
    assert memory.recent(2) == TEXTS[1:] and memory.recent(0) == []
    assert memory.tokens() == 27
    again = Memory(tmp_path, embedder)
    assert again.counts(["genre"], missing="none") == memory.counts(["genre"], missing="none")
