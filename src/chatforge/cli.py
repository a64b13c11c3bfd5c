"""The `chatforge` command: parse arguments -> call one stage -> print. `--help` is the documentation.

Each subcommand lives in `chatforge/commands/NAME.py` with `add_arguments(parser)` and `run(args) -> int`;
those modules import only the standard library and configs at load time, so `chatforge --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from chatforge import __version__
from chatforge.errors import ChatforgeError
from chatforge.threads import ENV, parse_threads

# name -> one-line help. Order is the order of `chatforge --help`, which follows the workflow.
COMMANDS = {
    "demo": "Run the whole product on the embedded default model: check, train, eval, compare, export.",
    "models": "List the model catalog and the models cached locally.",
    "check": "Validate a dataset line by line and print its token statistics (writes nothing).",
    "train": "Fine-tune a model (LoRA, full or freeze) or continue pretraining on raw text.",
    "eval": "Compare a tuned model with its base on held-out questions (BLEU, ROUGE, F1, perplexity).",
    "generate": "Answer one prompt and print the answer.",
    "chat": "Chat with a model in the terminal (streamed; /reset, /system, /save, /good, /bad, /fix, /exit).",
    "serve": "Serve a model behind an OpenAI-compatible HTTP API, with a web chat page.",
    "export": "Export a model or run: merged safetensors, or GGUF for llama.cpp / Ollama.",
    "feedback": "List, summarise and export the feedback kept by serve and chat (DPO / KTO / SFT files).",
    "improve": "Train a run on its users' feedback (DPO / KTO) and keep the result only if it is not worse.",
    "studio": "Open the studio: the whole pipeline in the browser (English / 中文).",
}

NO_TORCH = {"feedback", "models"}  # commands that never run a model: no --threads to offer

EPILOG = """\
A MODEL is a catalog name (see `chatforge models`; default: smollm2-135m-instruct), a local Hugging Face
model directory, a .gguf file, a training run directory (runs/NAME) or a cached Hugging Face Hub id.
User state (converted models, the conversation and feedback store chatforge.db) lives in ~/.cache/chatforge;
set CHATFORGE_HOME to move it.
Exit codes: 0 success, 1 failure, 2 bad input (every error names the file and line, or the option), 130
interrupted by Ctrl-C (nothing half-written is left behind).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatforge", description="Turn an open GPT-style model into your own domain chat assistant.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"chatforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"chatforge.commands.{name}")
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        if name not in NO_TORCH:
            p.add_argument("--threads", type=parse_threads, default=None, metavar="N",
                           help="CPU threads for torch: a number, or auto (default: the cores that are free: "
                                "affinity, cgroup quota, minus cores other processes keep busy).")
        p.set_defaults(_module=module, _parser=p)
    return parser


def _unknown_options(args, parser: argparse.ArgumentParser, extra: list[str]) -> None:
    """A mistyped option: the subcommand's usage (not chatforge's), and the closest real option if there is one."""
    import difflib
    import re

    command_parser = getattr(args, "_parser", parser)
    known = sorted(set(re.findall(r"--[a-z][a-z0-9-]*", command_parser.format_help())))
    message = f"unrecognized arguments: {' '.join(extra)}"
    for word in extra:
        close = difflib.get_close_matches(word.split("=")[0], known, n=1) if word.startswith("--") else []
        if close:
            message += f" (did you mean {close[0]}?)"
            break
    command_parser.error(message)  # exits 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        _unknown_options(args, parser, extra)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    if getattr(args, "threads", None) is not None:
        os.environ[ENV] = str(args.threads)  # read by every stage's set_threads(), and by child processes
    try:
        return int(args._module.run(args) or 0)
    except ChatforgeError as e:
        print(f"chatforge {args.command}: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(e.hint, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # a bug, not the user's fault: one line, traceback on request
        if os.environ.get("CHATFORGE_DEBUG"):
            raise
        print(f"chatforge {args.command}: internal error: {type(e).__name__}: {e}\n"
              "(set CHATFORGE_DEBUG=1 to see the traceback, and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
