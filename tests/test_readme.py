"""The README's two set-up commands: the test command is exactly what CI runs, and the
example code in the README runs."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def quick_start_commands():
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:sh|bash)\n(.+?)\n```", section)


def test_quick_start_has_two_commands_and_ci_runs_the_test_one():
    commands = quick_start_commands()
    assert len(commands) == 2, commands
    bench, test = commands
    assert "twolayer bench" in bench and "pytest" in test
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci_lines


def test_readme_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.+?)\n```", README, flags=re.S)
    assert blocks
    for block in blocks:
        if "Client(" in block:  # needs a running cluster; its API is exercised in test_distributed.py
            continue
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})


def test_results_tables_are_generated_from_their_saved_runs(tmp_path, monkeypatch):
    """Every table marked in the README and docs/performance.md is what
    `twolayer report --update` makes of the saved run it names: none is typed by hand."""
    from twolayer.report import update_tables

    monkeypatch.chdir(ROOT)  # the markers name runs relative to the repository
    for doc in ("README.md", "docs/performance.md"):
        copy = tmp_path / pathlib.Path(doc).name
        copy.write_text((ROOT / doc).read_text())
        assert "<!-- report: " in copy.read_text(), doc
        assert not update_tables(copy), f"{doc}: run `twolayer report --update {doc}`"
