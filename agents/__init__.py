"""LLM-facing pieces: prompt files, the conductor protocol, chat clients, the embedded server."""
