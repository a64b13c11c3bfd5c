"""The README opens with the two set-up commands and its CLI reference is the real --help output."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _updater():
    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "scripts" / "update_readme.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_cli_reference_is_generated_from_help():
    mod = _updater()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert mod.START in text and mod.END in text
    assert mod.render(text) == text, "README is stale: run .venv/bin/python scripts/update_readme.py"


def test_readme_opens_with_the_two_setup_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = text.split("```")[1].split("\n", 1)[1]  # drop the fence's language tag
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert [c for c in commands if c] == ["make demo", "make test"]
