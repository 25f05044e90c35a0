import pytest

from agents.prompts import PROMPTS_DIR, fill, load_prompts
from core.errors import UserError


def test_shipped_domains_load_with_large_keyword_pools():
    for name in ("finance", "biomedicine"):
        prompts = load_prompts(name)
        assert len(set(k.lower() for k in prompts.domain.keywords)) >= 150
        assert prompts.domain.genres and prompts.domain.audiences and prompts.domain.categories


def test_fill_substitutes_known_names_and_leaves_other_braces():
    assert (
        fill('{seeds} and {"json": 1} and {unknown}', seeds="a, b")
        == 'a, b and {"json": 1} and {unknown}'
    )


def test_override_folder_wins_and_changes_the_hash(tmp_path):
    (tmp_path / "expert.md").write_text("You are terse.")
    base, custom = load_prompts("finance"), load_prompts("finance", tmp_path)
    assert custom.texts["expert.md"] == "You are terse."
    assert custom.hash != base.hash


def test_a_misplaced_override_file_is_an_error_not_ignored(tmp_path):
    # write.md at the folder's root matches no prompt: it used to be ignored without a word.
    (tmp_path / "write.md").write_text("You are {expert}. {angle}")
    with pytest.raises(
        UserError,
        match=r"write.md: no prompt file has this name \(did you mean structured/write.md\?\)",
    ):
        load_prompts("finance", tmp_path)
    (tmp_path / "write.md").unlink()
    (tmp_path / "structured").mkdir()
    (tmp_path / "structured" / "write.md").write_text("You are {expert}. {angle}")
    (tmp_path / "domains").mkdir()
    (tmp_path / "domains" / "mine.yaml").write_text("a new domain may be added")
    assert (
        load_prompts("finance", tmp_path).texts["structured/write.md"]
        == "You are {expert}. {angle}"
    )


def test_missing_placeholder_is_a_clear_error(tmp_path):
    (tmp_path / "too_similar.md").write_text("Too similar (score {similarity}). Try again.")
    with pytest.raises(UserError, match=r"too_similar.md is missing placeholder\(s\): \{summary\}"):
        load_prompts("finance", tmp_path)


def test_a_fragment_keeps_its_placeholders_but_the_gates_notes_may_use_any(tmp_path):
    (tmp_path / "fragments.yaml").write_text('round: "ROUND {round}"\n')
    with pytest.raises(UserError, match=r"fragment round is missing placeholder\(s\): \{body\}"):
        load_prompts("finance", tmp_path)
    (tmp_path / "fragments.yaml").write_text('quality_task_text: "it was about the task."\n')
    prompts = load_prompts("finance", tmp_path)
    assert prompts.fragment("quality_task_text", words=9, keywords="x") == "it was about the task."
    assert "{keywords}" in load_prompts("finance").texts["fragments/quality_task_text"]


def test_unknown_domain_lists_the_available_ones():
    with pytest.raises(
        UserError, match="unknown domain 'astrology' .available: biomedicine, finance"
    ):
        load_prompts("astrology")


@pytest.mark.parametrize(
    "content,message",
    [
        ("keywords: [a, b\n", "not valid YAML"),
        ("keywords: []\n", "'keywords' is empty"),
        ("keywords: {a: 1}\n", "must be a list of strings"),
        ("- just a list\n", "expected a mapping"),
    ],
)
def test_broken_domain_files(tmp_path, content, message):
    (tmp_path / "domains").mkdir()
    (tmp_path / "domains" / "mine.yaml").write_text(content)
    with pytest.raises(UserError, match=message):
        load_prompts("mine", tmp_path)


def test_shipped_prompt_folder_is_complete():
    for name in (
        "conductor.md",
        "expert.md",
        "protocol_error.md",
        "too_similar.md",
        "task.md",
        "last_round.md",
        "fallback.md",
    ):
        assert (PROMPTS_DIR / name).is_file()


@pytest.mark.parametrize("name", ["task.md", "fragments.yaml", "domains/finance.yaml"])
def test_a_file_that_is_not_utf8_is_one_line_naming_it(tmp_path, name):
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_bytes(b"\xffkeywords: [a]\n")
    with pytest.raises(UserError, match=rf"{name}: not UTF-8 text \(byte 0\)"):
        load_prompts("finance", tmp_path)


@pytest.mark.parametrize("name", ["task.md", "fragments.yaml"])
def test_a_folder_named_like_a_prompt_file_is_an_error_not_ignored(tmp_path, name):
    (tmp_path / name).mkdir()
    with pytest.raises(UserError, match=rf"{name} is not a file"):
        load_prompts("finance", tmp_path)
