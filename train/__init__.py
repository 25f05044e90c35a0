"""Continual pretraining on a generated corpus (cpt.py) and domain evaluation (evaluate.py)."""
