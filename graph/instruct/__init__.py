"""MetaSynth-Instruct: instructions derived from a corpus's documents by the same conductor and
fresh-eyes experts, evolved over checked steps (`python -m graph.instruct`: cli.py)."""
