"""The MetaSynth document graph: seed -> recall -> conductor <-> experts -> novelty gate ->
commit."""
