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


ZH = ROOT / "README.zh-CN.md"


def _block(text: str, mod) -> str:
    return text.partition(mod.START)[2].partition(mod.END)[0]


def test_chinese_readme_keeps_in_step_with_the_english_one():
    mod = _updater()
    en, zh = (ROOT / "README.md").read_text(encoding="utf-8"), ZH.read_text(encoding="utf-8")
    assert "README.zh-CN.md" in en.split("```")[0]  # linked from the top of the English README
    assert mod.render(zh) == zh and _block(zh, mod) == _block(en, mod), \
        "README.zh-CN.md is stale: run .venv/bin/python scripts/update_readme.py"
    first_block = zh.split("```")[1].split("\n", 1)[1]
    assert [c.split("#")[0].strip() for c in first_block.splitlines() if c.split("#")[0].strip()] == \
        ["make demo-zh", "make test"]
    from chatforge.cli import COMMANDS

    tour = zh.partition("## 五分钟上手")[2].partition("\n## ")[0]
    missing = [c for c in COMMANDS if f"chatforge {c}" in en and f"chatforge {c}" not in zh]
    assert not missing, f"commands in README.md but not in README.zh-CN.md: {missing}"
    assert all(f"chatforge {c}" in tour for c in ("check", "train", "eval", "chat", "serve", "export", "demo"))
    for section in ("## 数据格式", "## Python API", "## 常见问题", "## 命令行参考"):
        assert section in zh
