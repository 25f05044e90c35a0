"""The template baselines MetaSynth is measured against (graph.py)."""
