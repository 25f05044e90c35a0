"""core/: the one JSONL reader's rules and the run directory's file names."""

import json
import re

import pytest

from core.errors import UserError
from core.jsonl import iter_jsonl, read_json, read_jsonl, repair_tail
from core.rundir import CORPUS, INSTRUCTIONS, RunDir, is_run_file


def write(path, *lines, tail=""):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + tail)
    return path


def test_a_runs_file_is_read_to_its_last_newline_any_other_file_to_its_last_line(tmp_path):
    # a commit still being written
    run_file = write(tmp_path / CORPUS, {"text": "a"}, tail='{"text": "b"}')
    assert [r["text"] for r in read_jsonl(run_file, committed=True)] == ["a"]
    # a hand-made file without a final newline
    assert [r["text"] for r in read_jsonl(run_file)] == ["a", "b"]

    cut = write(tmp_path / "user.jsonl", {"text": "a"}, tail='{"text": "b')
    assert [r["text"] for r in read_jsonl(cut, committed=True)] == ["a"]
    with pytest.raises(UserError, match=r"user.jsonl: line 2 is not valid JSON"):
        read_jsonl(cut)
    assert repair_tail(cut) == len('{"text": "b') and read_jsonl(cut) == [{"text": "a"}]


def test_every_broken_line_is_named_in_one_message(tmp_path):
    broken = tmp_path / "b.jsonl"
    broken.write_text('{"text": "a"}\nnot json\n{"text": "c"}\n')
    for committed in (False, True):
        with pytest.raises(UserError, match=r"b.jsonl: line 2 is not valid JSON"):
            read_jsonl(broken, committed=committed)
    no_text = write(tmp_path / "n.jsonl", {"text": "a"}, {"body": "b"})
    with pytest.raises(UserError, match=r"line 2 has no 'text' field"):
        read_jsonl(no_text)
    assert read_jsonl(no_text, field=None)[1] == {"body": "b"}
    with pytest.raises(UserError, match=r"line 1 is not a JSON object"):
        read_jsonl(write(tmp_path / "l.jsonl", [1, 2]), field=None)
    (tmp_path / "latin1.jsonl").write_bytes(b'{"text": "caf\xe9"}\n')
    with pytest.raises(UserError, match="not UTF-8"):
        list(iter_jsonl(tmp_path / "latin1.jsonl"))
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_a_json_file_is_an_object_or_one_line_that_names_it(tmp_path):
    (tmp_path / "ok.json").write_text('{"a": 1}')
    assert read_json(tmp_path / "ok.json", "report") == {"a": 1}
    (tmp_path / "list.json").write_text("[1]")
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "latin1.json").write_bytes(b'{"a": "caf\xe9"}')
    for name, says in [
        ("missing.json", "missing.json: not found (report)"),
        ("list.json", "list.json: not a report"),
        ("bad.json", "bad.json: not a readable report"),
        ("latin1.json", "latin1.json: not a readable report"),
        ("", "not a readable report"),  # a folder
    ]:
        with pytest.raises(UserError, match=re.escape(says)):
            read_json(tmp_path / name, "report")


def test_run_dir_names_every_file_and_finds_an_instruction_run(tmp_path):
    run = RunDir(tmp_path)
    assert (
        run.records == tmp_path / CORPUS
        and run.records in run.appended
        and run.memory in run.outputs
    )
    assert RunDir.find(tmp_path).records_name == CORPUS  # an empty folder is a generation run
    (tmp_path / INSTRUCTIONS).write_text("")
    assert RunDir.find(tmp_path).records == tmp_path / INSTRUCTIONS
    (tmp_path / CORPUS).write_text("")
    assert RunDir.find(tmp_path).records == tmp_path / CORPUS
    assert is_run_file(run.rejects) and not is_run_file(tmp_path / "fpb.jsonl")


def test_number_flags_refuse_nan_and_infinity():
    import argparse

    from core.cli import positive, within

    for check, text in (
        (positive(float), "nan"),
        (positive(float), "inf"),
        (within(float, 0), "inf"),
    ):
        with pytest.raises(argparse.ArgumentTypeError):
            check(text)  # NaN fails every comparison: a plain `value <= 0` lets it through
    assert within(int, 0)("0") == 0 and within(float, 0, 1)("1") == 1.0
    with pytest.raises(argparse.ArgumentTypeError, match=r"must be in \[0, 1\], got 2"):
        within(float, 0, 1)("2")
