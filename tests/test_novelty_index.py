"""The novelty gate's index choice (memory/index.py): auto switching, IVF retraining, persistence,
exactness."""

import json

import faiss
import numpy as np
import pytest

from memory import index as indexes
from memory.store import Memory

DIM = 384


class StubEmbedder:
    """Vectors are passed to admit directly; the store only needs the dimension."""

    dim = DIM

    def encode(self, texts):
        raise AssertionError("stored embeddings must be reused, never re-embedded")


def unit(rows):
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def clustered(n, rng, clusters=40):
    """Unit vectors in clusters (within-cluster cosine ~0.6), a little like sentence embeddings."""
    centers = unit(rng.standard_normal((clusters, DIM)))
    return unit(
        centers[rng.integers(clusters, size=n)] + 0.8 / np.sqrt(DIM) * rng.standard_normal((n, DIM))
    )


def admit_all(memory, vectors, threshold=0.99):
    for i, v in enumerate(vectors):
        assert memory.admit({"text": f"doc {len(memory)}"}, v, threshold).accepted, i


def saved_run(path, vectors, kind):
    """A run directory holding `vectors` under `--index kind`, its index saved; returns (memory,
    index.json)."""
    memory = Memory(path, StubEmbedder(), index=kind)
    admit_all(memory, vectors)
    memory.save_index()
    return memory, json.loads((path / "memory" / "index.json").read_text())


@pytest.fixture
def small_switch(monkeypatch):
    monkeypatch.setattr(indexes, "AUTO_IVF_AFTER", 100)
    monkeypatch.setattr(indexes, "IVF_MIN", 100)


def test_auto_is_exact_then_ivf_and_retrains_as_the_corpus_grows(tmp_path, small_switch):
    rng = np.random.default_rng(0)
    vectors = clustered(400, rng)
    memory = Memory(tmp_path, StubEmbedder())
    admit_all(memory, vectors[:99])
    assert indexes.kind_of(memory.index) == "flat"
    admit_all(memory, vectors[99:100])
    assert indexes.kind_of(memory.index) == "ivf" and memory.index.ntotal == 100
    first = memory.index.nlist
    assert first == indexes.ivf_nlist(100) and memory.index.nprobe == indexes.NPROBE
    admit_all(memory, vectors[100:])
    # retrained on the grown corpus
    assert memory.index.ntotal == 400 and memory.index.nlist > first
    assert indexes.ivf_nlist(400) < 2 * memory.index.nlist


@pytest.mark.parametrize("kind", indexes.KINDS)
def test_the_rebuild_point_is_the_first_size_the_index_no_longer_fits(kind, small_switch):
    """A commit compares the corpus size with `rebuild_at` instead of asking `fits`: both must name
    the same size, for every kind and for IVF indexes of several sizes."""
    vectors = clustered(700, np.random.default_rng(4))
    for n in (0, 50, 100, 150, 300, 700):
        index = indexes.build(indexes.wanted(kind, n), DIM, vectors[:n])
        first = next((m for m in range(n, 20_000) if not indexes.fits(index, kind, m)), None)
        expected = indexes.rebuild_at(index, kind)
        assert first == (None if expected == float("inf") else expected), (kind, n)


def test_ivf_index_persists_and_resumes(tmp_path, small_switch):
    rng = np.random.default_rng(1)
    vectors = clustered(300, rng)
    memory, meta = saved_run(tmp_path, vectors, "ivf")
    assert meta["kind"] == "ivf" and meta["count"] == 300
    again = Memory(tmp_path, StubEmbedder(), index="ivf")
    assert indexes.kind_of(again.index) == "ivf" and again.index.ntotal == 300
    assert again.index.nlist == memory.index.nlist
    assert again.nearest(vectors[7], 1)[0][1]["text"] == "doc 7"
    # by flag: rebuilt
    assert indexes.kind_of(Memory(tmp_path, StubEmbedder(), index="flat").index) == "flat"


def test_an_old_run_directory_with_a_flat_index_resumes_under_auto(tmp_path, small_switch):
    """Before memory/index.py: a flat index.faiss and an index.json with kind 'flat'. It must still
    load."""
    rng = np.random.default_rng(2)
    vectors = clustered(150, rng)
    assert saved_run(tmp_path, vectors, "flat")[1]["kind"] == "flat"
    resumed = Memory(tmp_path, StubEmbedder())  # auto: 150 documents are past the (patched) switch
    assert indexes.kind_of(resumed.index) == "ivf" and resumed.index.ntotal == 150
    assert resumed.nearest(vectors[42], 1)[0][1]["text"] == "doc 42"
    (tmp_path / "memory" / "index.faiss").unlink()  # no index at all: rebuilt from embeddings.f32
    assert Memory(tmp_path, StubEmbedder()).index.ntotal == 150


def test_ivf_gate_decisions_equal_exact_search_on_near_duplicates(tmp_path, small_switch):
    rng = np.random.default_rng(3)
    vectors = clustered(2000, rng)
    memory = Memory(tmp_path, StubEmbedder(), index="ivf")
    # fill without 2000 fsyncs
    memory.records = [{"id": str(i), "text": f"doc {i}"} for i in range(len(vectors))]
    memory.index = indexes.build("ivf", DIM, vectors)
    exact = faiss.IndexFlatIP(DIM)
    exact.add(vectors)
    picks = rng.choice(len(vectors), 200, replace=False)
    # cosine ~0.96
    near = unit(vectors[picks] + 0.3 / np.sqrt(DIM) * rng.standard_normal((200, DIM)))
    novel = clustered(200, rng, clusters=40)
    queries = np.vstack([near, novel])
    threshold = 0.85
    truth = exact.search(queries, 1)[0][:, 0] >= threshold
    assert truth[:200].all()
    decided = np.array([memory.nearest(q, 1)[0][0] >= threshold for q in queries])
    assert (decided == truth).all()
    verdict = memory.admit({"text": "copy"}, near[0], threshold)
    assert not verdict.accepted and verdict.nearest["text"] == f"doc {picks[0]}"
