"""Chat with a model in the terminal. Answers stream as they are generated; the history is kept.

Commands inside the chat: /reset, /system TEXT, /save FILE (OpenAI messages JSONL), /help, /exit.
With piped input, each line is one user turn:  printf 'Hi\\nWho are you?\\n' | chatforge chat MODEL
"""

from chatforge.generation_config import GenerateConfig, add_model_arguments


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL", nargs="?", default=None,
                        help="Model name, directory, .gguf file or run directory (default: smollm2-135m-instruct).")
    parser.add_argument("--system", "-s", metavar="TEXT",
                        help="A system prompt (default: the one the run was trained with, if any; '' for none).")
    add_model_arguments(parser)


def run(args) -> int:
    import sys

    from chatforge.chat import ChatSession
    from chatforge.config import build

    from chatforge.models.resolve import resolve

    cfg = build(GenerateConfig, args)
    params = cfg.sampling()
    resolved = resolve(args.model)
    engine = cfg.engine(resolved)
    system = args.system if args.system is not None else resolved.system_prompt
    session = ChatSession(engine, params, system=system or None)
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"Chatting with {engine.name}. /help for commands, /exit to leave.", file=sys.stderr)
        if args.system is None and system:
            print(f"(system prompt, as trained: {system}  -- /system TEXT changes it)", file=sys.stderr)
    while True:
        try:
            line = input(">>> " if interactive else "")
        except EOFError:
            break
        if not line.strip():
            continue
        if line.startswith("/"):
            msg = session.command(line)
            if msg is None:
                break
            print(msg, file=sys.stderr)
            continue
        try:
            for piece in session.ask(line):
                sys.stdout.write(piece)
                sys.stdout.flush()
        except KeyboardInterrupt:
            print("\n(answer interrupted)", file=sys.stderr)
            continue
        sys.stdout.write("\n")
        sys.stdout.flush()
    return 0
