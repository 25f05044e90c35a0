"""MetaSynth's documents: the conductor plans each one and consults experts who write it, under the
structured protocol (structured.py) or the paper's free-text one (text.py); graph.py wires them."""
