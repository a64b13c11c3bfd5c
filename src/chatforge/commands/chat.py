"""Chat with a model in the terminal. Answers stream as they are generated; the history is kept.

Commands inside the chat: /reset, /system TEXT, /save FILE (OpenAI messages JSONL), /good, /bad, /fix TEXT
(feedback on the last answer), /help, /exit. Every exchange is kept in the store (CHATFORGE_HOME/chatforge.db or
--store PATH) unless --no-log; `chatforge feedback` lists and exports it. An answer cut off at --max-tokens says so.
With piped input, each line is one user turn:  printf 'Hi\\nWho are you?\\n' | chatforge chat MODEL
"""

from chatforge.generation_config import GenerateConfig, add_model_arguments
from chatforge.store.config import LogConfig


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL", nargs="?", default=None,
                        help="Model name, directory, .gguf file or run directory (default: smollm2-135m-instruct).")
    parser.add_argument("--system", "-s", metavar="TEXT",
                        help="A system prompt (default: the one the run was trained with, if any; '' for none).")
    add_model_arguments(parser)
    from chatforge.config import add_arguments

    add_arguments(parser, LogConfig)


def run(args) -> int:
    import sys

    from chatforge.chat import ChatSession
    from chatforge.config import build
    from chatforge.generation_config import cut_off_message, empty_answer_message
    from chatforge.infer import Engine
    from chatforge.models.resolve import resolve

    cfg = build(GenerateConfig, args)
    params = cfg.sampling()
    logging = build(LogConfig, args)
    resolved = resolve(args.model)
    loaded = cfg.load(resolved)
    for note in loaded.notes:
        print(f"({note})", file=sys.stderr)
    engine = Engine(loaded, compile=cfg.compile)
    system = args.system if args.system is not None else resolved.system_prompt
    store, ids = logging.open(source="chat", models={engine.name: resolved})
    session = ChatSession(engine, params, system=system or None, store=store, model_id=ids.get(engine.name))
    interactive = sys.stdin.isatty()
    if interactive:
        kept = f"kept in {store.path} (/good, /bad, /fix TEXT rate answers)" if store else "not kept (--no-log)"
        print(f"Chatting with {engine.name}; the conversation is {kept}. /help for commands, /exit to leave.",
              file=sys.stderr)
        if args.system is None and system:
            print(f"(system prompt, as trained: {system}  -- /system TEXT changes it)", file=sys.stderr)
    read_any = False
    while True:
        try:
            line = input(">>> " if interactive else "")
        except EOFError:
            break
        if not line.strip():
            continue
        read_any = True
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
        if session.last is not None and not session.last.text.strip():
            print(f"({empty_answer_message(loaded, session.last)})", file=sys.stderr)
        sys.stdout.write("\n")
        sys.stdout.flush()
        cut = cut_off_message(session.last, params)
        if cut and session.last.text.strip():
            print(f"({cut})", file=sys.stderr)
    if not read_any and not interactive:
        from chatforge.errors import ChatforgeError

        raise ChatforgeError("stdin: no input, so nothing was asked",
                             hint="pipe one user turn per line:  printf 'Hi\\n' | chatforge chat MODEL")
    return 0
