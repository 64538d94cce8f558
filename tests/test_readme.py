"""The README as a new user reads it: one or two screens, the current verdicts in a few sentences one can take in,
no internal history (that lives in docs/changelog.md), what `make run` prints described as it prints it, links that
lead somewhere, and a "compare two methods" sweep that is valid and is what its quoted result was measured on."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CHANGELOG = ROOT / "docs" / "changelog.md"

MAX_LINES = 200  # one or two screens; everything else is a page of the documentation site
MAX_WORDS = 40   # a verdict sentence longer than this is a paragraph in disguise
# history of the project's own making, meaningless to a user: it belongs in the changelog
HISTORY = ("mtlwb ≤ 0.1", "mtlwb <= 0.1", "the parity work", "no dataset can be downloaded here", "the old balance",
           "item 4 of the issue", "first calibration", "as of commit")


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


def test_readme_fits_on_two_screens():
    assert len(README.splitlines()) < MAX_LINES


def test_the_verdicts_are_three_plain_sentences():
    verdicts = section(README, "What the results say").split("\n\n")[0]
    said = sentences(verdicts)
    assert len(said) == 3, said
    long = [(len(s.split()), s[:80]) for s in said if len(s.split()) > MAX_WORDS]
    assert not long, f"verdict sentences over {MAX_WORDS} words: {long}"


def test_internal_history_is_in_the_changelog_not_in_the_readme():
    lowered = README.lower()
    assert [h for h in HISTORY if h.lower() in lowered] == []
    changelog = CHANGELOG.read_text()
    assert "mtlwb ≤ 0.1" in changelog and "parity work" in changelog and "3 min 43 s" in changelog
    assert "docs/changelog.md" in README


def test_make_run_is_described_as_printing_its_table():
    two = section(README, "Two commands")
    assert "prints its table and report" in two
    assert "At the end it prints the verdict lines and the main table" in " ".join(two.split())
    table = two[two.index("| method | n_seeds"):]
    assert table.splitlines()[1].startswith("|---")


def _github_anchor(heading: str) -> str:
    heading = re.sub(r"\s*\{#[^}]*\}\s*$", "", heading.strip())
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _anchors(markdown: str) -> set[str]:
    out = set(re.findall(r"\{#([\w-]+)\}", markdown))
    return out | {_github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", markdown, re.M)}


def test_every_relative_link_in_the_readme_resolves():
    """Files (documentation pages, images) exist; an anchor into a page names one of its headings."""
    links = re.findall(r"\]\(([^)\s]+)\)", README)
    relative = [t for t in links if not re.match(r"^[a-z]+:", t) and not t.startswith("#")]
    assert len(relative) >= 10
    broken = []
    for target in relative:
        path, _, anchor = target.partition("#")
        file = ROOT / path
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text()):
            broken.append(target)
    assert broken == []
    own = [t[1:] for t in links if t.startswith("#")]
    assert [a for a in own if a not in _anchors(README)] == []


def test_the_compare_sweep_is_valid_and_its_runs_are_the_headline_sweeps():
    """The README quotes the headline sweep's result and time for its ten-line sweep: that holds because its runs
    are exactly (same ids: same effective config) the supervised and JTR onelabel runs of sweeps/regime.yaml."""
    from mtlwb.sweeps.spec import load_spec

    block = re.search(r"```yaml\n(.*?)```", section(README, "Compare two methods"), re.S).group(1)
    assert len(block.strip().splitlines()) <= 10
    spec = load_spec(yaml.safe_load(block))
    runs = {r.run_id: r for r in spec.runs()}
    regime = {r.run_id: r for r in load_spec(ROOT / "sweeps" / "regime.yaml").runs()}
    assert len(runs) == 10 and set(runs) <= set(regime)
    assert {(r.params["method"], r.params["label_setting"]) for r in runs.values()} == {
        ("supervised", "onelabel"), ("jtr", "onelabel")}
    # the quoted result is the headline table's JTR onelabel cell
    results = (ROOT / "docs" / "results" / "index.md").read_text()
    row = next(line for line in results.splitlines() if line.startswith("| jtr | onelabel | 5 |"))
    mean, interval = re.fullmatch(r"(\S+ %) (\[.+\])", row.split(" | ")[6]).groups()
    assert f"{mean} Δ_MTL {interval}" in " ".join(README.split())
