"""The bottom layer every package may import: user errors, command-line helpers, JSONL files and the
names of a run directory's files."""
