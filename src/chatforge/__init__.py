"""chatforge: turn an open GPT-style model into your own domain chat assistant.

The Python API mirrors the CLI; heavy libraries (torch, transformers) load only when used:

    from chatforge import load_model, Engine
    engine = Engine(load_model("smollm2-135m-instruct"))
    print(engine.chat([{"role": "user", "content": "Hi!"}]).text)
"""

__version__ = "0.1.0"

__all__ = ["load_model", "Engine", "SamplingParams", "ChatforgeError", "__version__"]


def _quiet_optional_libraries() -> None:
    """transformers imports torchao when it is installed (the `quantize` extra): torchao then logs a warning for
    each CUDA kernel library a CPU machine cannot load, and torch's pytree one per enum torchao registers.
    Neither concerns the user; errors still show."""
    import logging

    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


_quiet_optional_libraries()


def _bound_kernel_caches() -> None:
    """Before torch builds its first CPU kernel: oneDNN's kernel caches would otherwise hold buffers for 2 x 1,024
    problem shapes, GBs in a server or a preference run whose shapes vary (chatforge/memory.py)."""
    from chatforge.memory import bound_kernel_caches

    bound_kernel_caches()


_bound_kernel_caches()


def __getattr__(name):  # lazy, so `import chatforge` (and `chatforge --help`) stays instant
    if name == "load_model":
        from chatforge.models.load import load_model

        return load_model
    if name in ("Engine", "SamplingParams", "Completion", "Update"):
        from chatforge import infer

        return getattr(infer, name)
    if name == "ChatforgeError":
        from chatforge.errors import ChatforgeError

        return ChatforgeError
    raise AttributeError(name)
