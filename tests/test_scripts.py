"""The shell scripts' Python entry points still import: a moved module must not rot a script
silently."""

import ast
import importlib
import re
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).parent.parent / "scripts").glob("*.sh"))
SNIPPET = re.compile(r"""python -c "([^"]+)\"""")


def imports(code: str) -> list[tuple[str, str]]:
    return [
        (node.module, alias.name)
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    ]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_python_snippet_in_a_script_imports(script):
    for code in SNIPPET.findall(script.read_text()):
        for module, name in imports(code):
            assert hasattr(importlib.import_module(module), name), f"{script.name}: {module}.{name}"


def test_the_vllm_script_is_checked():
    vllm = Path(__file__).parent.parent / "scripts" / "vllm-cpu.sh"
    assert imports(SNIPPET.findall(vllm.read_text())[0]) == [
        ("agents.checkpoint", "embedded_checkpoint")
    ]
