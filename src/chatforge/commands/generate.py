"""Answer one prompt with a model and print the answer (greedy when --temperature is 0).

Examples: chatforge generate smollm2-135m-instruct "What is the capital of France?"
          chatforge generate gemma3-270m --raw "北京是"      # a base model continues plain text

An answer that comes back empty is an error (exit code 1) that says why, never an empty line; one cut off at
--max-tokens (or at the model's context) says so on stderr.
"""

from chatforge.generation_config import GenerateConfig, add_model_arguments


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL", help="Model name, directory, .gguf file or run directory.")
    parser.add_argument("prompt", metavar="PROMPT", help="The user's message. Use - to read it from stdin.")
    parser.add_argument("--system", "-s", metavar="TEXT",
                        help="A system prompt (default: the one the run was trained with, if any; '' for none).")
    parser.add_argument("--raw", action="store_true",
                        help="No chat template: continue PROMPT as plain text (for base models).")
    add_model_arguments(parser)


def run(args) -> int:
    import sys

    from chatforge.config import build
    from chatforge.errors import ChatforgeError

    cfg = build(GenerateConfig, args)
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise ChatforgeError("PROMPT is empty")
    if args.raw and args.system:
        raise ChatforgeError("--system has no place in --raw text: put it into PROMPT")
    from chatforge.generation_config import cut_off_message, empty_answer_message
    from chatforge.infer import Completion, Engine
    from chatforge.models.resolve import resolve
    from chatforge.models.template import with_system

    params = cfg.sampling()
    resolved = resolve(args.model)
    loaded = cfg.load(resolved)
    for note in loaded.notes:
        print(f"({note})", file=sys.stderr)
    engine = Engine(loaded, compile=cfg.compile)
    if args.raw:
        pieces = _stream_raw(engine, prompt, params)
    else:
        system = args.system if args.system is not None else resolved.system_prompt
        pieces = engine.stream_chat(with_system([{"role": "user", "content": prompt}], system), params)
    done, held, started = None, "", False
    for piece in pieces:
        if isinstance(piece, Completion):
            done = piece
            continue
        held += piece
        if started or held.strip():  # leading whitespace waits: an answer of only whitespace is no answer
            sys.stdout.write(held)
            sys.stdout.flush()
            held, started = "", True
    if done is not None and not started:
        raise ChatforgeError(empty_answer_message(loaded, done), exit_code=1)
    sys.stdout.write("\n")
    cut = cut_off_message(done, params)
    if cut:
        sys.stdout.flush()
        print(f"({cut})", file=sys.stderr)
    return 0


def _stream_raw(engine, prompt: str, params):
    """Plain continuation of `prompt` (BOS first when the tokenizer adds one), streamed like a chat answer."""
    for updates in engine.run([engine.encode_text(prompt)], [params]):
        for u in updates:
            if u.delta:
                yield u.delta
            if u.done:
                yield u.done
