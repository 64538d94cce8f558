"""The README as a new user reads it: a first section of sentences one can take in, no internal history (that lives
in docs/changelog.md), and what `make run` prints described as it prints it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CHANGELOG = ROOT / "docs" / "changelog.md"

MAX_WORDS = 60   # a sentence longer than this is a paragraph in disguise (the headline was one of ~200 words)
# history of the project's own making, meaningless to a user: it belongs in the changelog
HISTORY = ("mtlwb ≤ 0.1", "mtlwb <= 0.1", "the parity work", "no dataset can be downloaded here", "the old balance")


def section(markdown: str, title: str) -> str:
    return markdown.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def sentences(markdown: str) -> list[str]:
    """Sentences of a markdown passage: list items end one; link targets and emphasis marks are not words."""
    text = re.sub(r"\]\([^)]*\)", "]", markdown).replace("**", "")
    out = []
    for item in re.split(r"(?:^|\n)\s*- ", text):
        out += [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z(`\[])", " ".join(item.split())) if s.strip()]
    return out


def test_sentences_splits_at_sentence_ends_and_list_items():
    assert sentences("- **A b.** C d; e f.\n  - G [h](#x) i. j k") == ["A b.", "C d; e f.", "G [h] i. j k"]


def test_what_to_know_first_has_no_sentence_over_60_words():
    first = section(README, "What to know first")
    long = [(len(s.split()), s[:80]) for s in sentences(first) if len(s.split()) > MAX_WORDS]
    assert not long, f"sentences over {MAX_WORDS} words in 'What to know first': {long}"
    headline = first[first.index("Headline on the built-in scenes"):]
    assert max(len(s.split()) for s in sentences(headline)) <= 40


def test_internal_history_is_in_the_changelog_not_in_the_readme():
    lowered = README.lower()
    assert [h for h in HISTORY if h.lower() in lowered] == []
    changelog = CHANGELOG.read_text()
    assert "mtlwb ≤ 0.1" in changelog and "parity work" in changelog and "3 min 43 s" in changelog
    assert "docs/changelog.md" in README or "changelog.md" in README


def test_make_run_is_described_as_printing_its_table():
    two = section(README, "Two commands")
    assert "prints its table and report" in two
    assert "At the end it prints the\nverdict lines and the main table" in two
    table = two[two.index("| method | n_seeds"):]
    assert table.splitlines()[1].startswith("|---")
