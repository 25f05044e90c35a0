"""The installed package, not only a checkout: the wheel carries every prompt file and finds it."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_an_installed_wheel_carries_and_loads_every_prompt_file(tmp_path):
    pytest.importorskip(
        "setuptools", reason="building the wheel without isolation needs setuptools"
    )
    source = tmp_path / "source"  # a copy: setuptools builds in the tree it is given
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".*", "runs", "reports", "build", "*.egg-info", "__pycache__"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    [wheel] = tmp_path.glob("metasynth-*.whl")
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("prompts/")}
    wanted = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "prompts").rglob("*")
        if p.suffix in (".md", ".gbnf", ".yaml")
    }
    assert wanted and wanted <= shipped

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "from agents.prompts import PROMPTS_DIR, load_prompts; "
        "from agents.instruction import load_instruct_prompts;"
        "import graph.documents.graph, graph.baselines.graph, graph.instruct.graph;"
        "load_prompts('biomedicine'); load_instruct_prompts('finance'); print(PROMPTS_DIR)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.strip() == str(site / "prompts")  # the installed copy, not the checkout's
