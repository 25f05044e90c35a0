"""The bottom layer every package may import: command-line helpers (errors stay in agents/errors.py)."""
