"""Answer one prompt with a model and print the answer (greedy when --temperature is 0).

Example:  chatforge generate smollm2-135m-instruct "What is the capital of France?"
"""

from chatforge.generation_config import GenerateConfig, add_model_arguments


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL", help="Model name, directory, .gguf file or run directory.")
    parser.add_argument("prompt", metavar="PROMPT", help="The user's message. Use - to read it from stdin.")
    parser.add_argument("--system", "-s", metavar="TEXT",
                        help="A system prompt (default: the one the run was trained with, if any; '' for none).")
    add_model_arguments(parser)


def run(args) -> int:
    import sys

    from chatforge.config import build
    from chatforge.errors import ChatforgeError

    cfg = build(GenerateConfig, args)
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise ChatforgeError("PROMPT is empty")
    from chatforge.models.resolve import resolve
    from chatforge.models.template import with_system

    resolved = resolve(args.model)
    engine = cfg.engine(resolved)
    system = args.system if args.system is not None else resolved.system_prompt
    messages = with_system([{"role": "user", "content": prompt}], system)
    for piece in engine.stream_chat(messages, cfg.sampling()):
        if isinstance(piece, str):
            sys.stdout.write(piece)
            sys.stdout.flush()
    sys.stdout.write("\n")
    return 0
