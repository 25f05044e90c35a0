"""The memory of prior generations: an offline sentence embedder and a FAISS novelty index."""
