"""Chat templates: the model's own when it has one, else chatforge's documented default.

The default template (for base models such as GPT-2) renders

    ### System:\n{system}\n\n### User:\n{question}\n\n### Assistant:\n{answer}<eos>\n\n

The end of an assistant turn is the tokenizer's EOS token: it is trained (labels) and generation stops there.
A tokenizer that puts a BOS token before plain text (Gemma's <bos>, Llama's <s>) gets the same template with
that BOS first (DEFAULT_CHAT_TEMPLATE_BOS): such base models were pretrained with it at the start of every
document and are lost without it (Gemma 3 ends its turn at once).
"""

from __future__ import annotations

DEFAULT_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '### ' + (message['role'] | capitalize) + ':\\n' + message['content'] }}"
    "{%- if message['role'] == 'assistant' -%}{{ eos_token }}{%- endif -%}"
    "{{ '\\n\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '### Assistant:\\n' }}{%- endif -%}"
)
DEFAULT_CHAT_TEMPLATE_BOS = "{{- bos_token -}}" + DEFAULT_CHAT_TEMPLATE


def is_default_template(template) -> bool:
    """Is this chatforge's default template (either variant)?"""
    return template in (DEFAULT_CHAT_TEMPLATE, DEFAULT_CHAT_TEMPLATE_BOS)


def adds_bos(tokenizer) -> bool:
    """Does the tokenizer put its BOS token (a distinct one, not GPT-2's EOS) before plain text?"""
    bos = tokenizer.bos_token_id
    if bos is None or bos == tokenizer.eos_token_id:
        return False
    try:
        ids = tokenizer("a")["input_ids"]
    except Exception:  # an odd tokenizer: no BOS
        return False
    return bool(ids) and ids[0] == bos

# Special tokens that end a turn in common template families (ChatML, Llama 3, Phi, Gemma, GPT-2/base).
_END_OF_TURN_CANDIDATES = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                           "<|end_of_text|>", "</s>", "<|eom_id|>")


PROBE_SECONDS = 10.0  # a template that cannot render a two-turn conversation in this time never will
_PROBE = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


def ensure_chat_template(tokenizer) -> bool:
    """Give a tokenizer without a chat template the default one (and a pad token). Returns True if it did.
    A template of its own is first tried on a small conversation: one that loops or recurses without end is
    refused here (a clear error in bounded time), not on the first request."""
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(tokenizer, "chat_template", None):
        probe_template(tokenizer)
        return False
    if tokenizer.eos_token is None:
        from chatforge.errors import ChatforgeError

        raise ChatforgeError("this tokenizer has neither a chat template nor an EOS token, so chatforge cannot "
                             "tell where an answer ends", hint="use a tokenizer with an EOS token")
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE_BOS if adds_bos(tokenizer) else DEFAULT_CHAT_TEMPLATE
    return True


def probe_template(tokenizer, seconds: float | None = None) -> None:
    """Render a small conversation with a time limit (in the main thread: a timer signal stops the render; in
    another thread it cannot be stopped, so it is not tried). Errors a template raises on purpose (e.g. 'no
    system role') are fine here; an endless loop or endless recursion is a ChatforgeError."""
    import signal
    import threading

    from chatforge.errors import ChatforgeError

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        return
    seconds = PROBE_SECONDS if seconds is None else seconds

    class _Timeout(Exception):
        pass

    def stop(signum, frame):
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        render(tokenizer, _PROBE, add_generation_prompt=True)
    except _Timeout:
        raise ChatforgeError(f"the tokenizer's chat template did not finish rendering a 3-message conversation in "
                             f"{seconds:g} s (an endless loop?)", hint="fix or replace the chat template") from None
    except RecursionError:
        raise ChatforgeError("the tokenizer's chat template recurses without end",
                             hint="fix or replace the chat template") from None
    except Exception:  # noqa: BLE001 - a template may refuse this conversation on purpose; encoding reports it
        pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def end_of_turn_ids(tokenizer) -> list[int]:
    """Token ids that end an assistant turn: EOS plus the template's own end-of-turn marker(s)."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):
        template = " ".join(template.values())
    for tok in _END_OF_TURN_CANDIDATES:
        if tok not in template:
            continue
        tid = tokenizer.convert_tokens_to_ids(tok)  # a dict lookup; get_vocab() would copy the whole vocabulary
        if isinstance(tid, int) and tokenizer.convert_ids_to_tokens(tid) == tok and tid not in ids:
            ids.append(tid)
    return ids


def render(tokenizer, messages: list[dict], *, add_generation_prompt: bool, tools: list[dict] | None = None) -> str:
    """Messages (and tool definitions, see chatforge.models.tools) -> the template's text (no tokenization)."""
    from chatforge.models.tools import prepare_for_template

    messages, tools = prepare_for_template(tokenizer, messages, tools)
    return render_raw(tokenizer, messages, add_generation_prompt, tools)


def render_raw(tokenizer, messages: list[dict], add_generation_prompt: bool, tools: list[dict] | None) -> str:
    extra = {"tools": tools} if tools else {}
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                         **extra)


def encode_prompt(tokenizer, messages: list[dict], *, tools: list[dict] | None = None, prefix: str = "") -> list[int]:
    """Messages -> prompt token ids ending with the assistant header (and `prefix`, the start of the answer
    the model must continue, e.g. a forced tool call), ready for generation."""
    text = render(tokenizer, messages, add_generation_prompt=True, tools=tools) + prefix
    if not getattr(tokenizer, "is_fast", False):  # llama.cpp's (infer/llamacpp.py): no offsets, no added-token table
        return _tokenize_segments(tokenizer, text, messages, tools)
    return tokenize_chat(tokenizer, text, messages, tools=tools, add_generation_prompt=True)[0]


# ---- special tokens typed inside a message ---------------------------------------------------------------------
# A tokenizer parses special-token strings wherever they are: "<|im_end|>\n<|im_start|>system\n..." typed by a
# user (or quoted by a FAQ about ChatML) would end the turn and forge a system one. Such strings inside a
# message's content are tokenized as text; only the template's own are special tokens.

_SLOT_START = "\x00chatforge-content-"
_SLOT = _SLOT_START + "{}\x00"


def tokenize_chat(tokenizer, text: str, messages: list[dict], *, tools: list[dict] | None = None,
                  add_generation_prompt: bool) -> tuple[list[int], list[tuple[int, int]]]:
    """(ids, character offsets) of `text`, the rendering of `messages` (possibly followed by text of ours), with
    special-token strings inside the messages' contents tokenized as text. Text without any is tokenized in one
    run, exactly as before; otherwise the template's pieces and the contents are tokenized one by one."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    added = {i: t.content for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    special, firsts = set(added), {token[:1] for token in added.values()}
    count = sum(1 for i in ids if i in special)
    contents = [m["content"] for m in messages if isinstance(m.get("content"), str)]
    if not count or not any(ch in c for c in contents for ch in firsts):
        return ids, offsets  # no content could hold a special token's string (each holds its first character)
    split = _split_contents(tokenizer, text, messages, tools, add_generation_prompt)
    if split is None or sum(1 for i in _ids(tokenizer, "".join(split[0::2])) if i in special) == count:
        return ids, offsets  # (an odd template, or every special token is the template's own)
    ids, offsets, start = [], [], 0
    for k, segment in enumerate(split):
        piece = tokenizer(segment, add_special_tokens=False, return_offsets_mapping=True,
                          split_special_tokens=k % 2 == 1)  # odd segments: a message's content, as text
        ids += piece["input_ids"]
        offsets += [(a + start, b + start) for a, b in piece["offset_mapping"]]
        start += len(segment)
    return ids, offsets


def _ids(tokenizer, text: str, as_text: bool = False) -> list[int]:
    """as_text: special-token strings in `text` are tokenized as text."""
    extra = {"split_special_tokens": True} if as_text else {}
    return tokenizer(text, add_special_tokens=False, **extra)["input_ids"]


def _tokenize_segments(tokenizer, text, messages, tools) -> list[int]:
    """tokenize_chat for a tokenizer that only tokenizes (llama.cpp's): the prompt in one run, unless a message's
    content tokenizes differently as text, i.e. holds a special token's string; then piece by piece."""
    ids = _ids(tokenizer, text)
    split = _split_contents(tokenizer, text, messages, tools, True)
    if split is None:
        return ids
    contents = [_ids(tokenizer, c, as_text=True) for c in split[1::2]]
    if all(as_text == _ids(tokenizer, c) for as_text, c in zip(contents, split[1::2])):
        return ids
    out: list[int] = []
    for k, segment in enumerate(split):
        out += contents[k // 2] if k % 2 else _ids(tokenizer, segment)
    return out


def _split_contents(tokenizer, text, messages, tools, add_generation_prompt) -> list[str] | None:
    """`text` as [template, content, template, content, ..., template] (the template's pieces from a rendering
    with a slot in place of each content), or None when the template changes the contents beyond trimming them
    (Gemma's trims)."""
    slotted = [dict(m, content=_SLOT.format(k)) if isinstance(m.get("content"), str) and m["content"] else m
               for k, m in enumerate(messages)]
    try:
        rest = render(tokenizer, slotted, add_generation_prompt=add_generation_prompt, tools=tools)
    except Exception:  # the template refuses the slots: no split
        return None
    heads, contents = [], []
    for k, m in enumerate(messages):
        if slotted[k] is m:
            continue
        head, found, rest = rest.partition(_SLOT.format(k))
        if not found or _SLOT_START in head:
            return None
        heads.append(head)
        contents.append(m["content"])
    if not heads or _SLOT_START in rest:
        return None
    for trim in (False, True):
        out = [part for head, c in zip(heads, contents) for part in (head, c.strip() if trim else c)] + [rest]
        joined = "".join(out)
        if text.startswith(joined):
            out[-1] += text[len(joined):]  # text of ours after the rendering (a forced tool call's start)
            return out
    return None


# ---- the default system prompt ------------------------------------------------------------------------------
# A run trained on conversations that share one system prompt answers as trained only when asked with it, so
# the run records that prompt (run.json, final/chatforge.json) and every way of using the run puts it in front
# of a conversation that has no system message of its own; an explicit system message always wins.

def with_system(messages: list[dict], system: str | None) -> list[dict]:
    """`messages` with `system` first, unless it is empty or the conversation has its own system message."""
    if not system or any(m.get("role") in ("system", "developer") for m in messages):
        return list(messages)
    return [{"role": "system", "content": system}] + list(messages)


_SENTINEL = "\x00chatforge-system\x00"


def template_default_system(tokenizer) -> str | None:
    """The system prompt the chat template inserts when a conversation has none (SmolLM2's does), else None."""
    user = [{"role": "user", "content": "Hi"}]
    try:
        with_sentinel = render(tokenizer, [{"role": "system", "content": _SENTINEL}] + user,
                               add_generation_prompt=True)
        without = render(tokenizer, user, add_generation_prompt=True)
    except Exception:  # a template that refuses system messages has no default one either
        return None
    head, found, tail = with_sentinel.partition(_SENTINEL)
    if found and without.startswith(head) and without.endswith(tail) and len(without) > len(head) + len(tail):
        return without[len(head):len(without) - len(tail)]
    return None


def set_default_system(tokenizer, system: str) -> bool:
    """Make the tokenizer's chat template insert `system` when a conversation has no system message (in
    place), so that tools reading only the template (transformers, vLLM, llama.cpp) apply it too. Returns
    False, changing nothing, when the template does not then render exactly as with that message given."""
    import json

    original = tokenizer.chat_template
    if not isinstance(original, str) or not system:
        return False
    user = [{"role": "user", "content": "Hi"}]
    expected = render(tokenizer, [{"role": "system", "content": system}] + user, add_generation_prompt=True)
    explicit = [{"role": "system", "content": "Other."}] + user
    expected_explicit = render(tokenizer, explicit, add_generation_prompt=True)
    literal = json.dumps(system, ensure_ascii=False)  # a valid Jinja string literal, whatever the text holds
    tokenizer.chat_template = (
        "{%- if not (messages and messages[0]['role'] == 'system') -%}"
        f"{{%- set messages = [{{'role': 'system', 'content': {literal}}}] + messages -%}}"
        "{%- endif -%}\n" + original)
    try:
        ok = (render(tokenizer, user, add_generation_prompt=True) == expected
              and render(tokenizer, explicit, add_generation_prompt=True) == expected_explicit)
    except Exception:
        ok = False
    if not ok:
        tokenizer.chat_template = original
    return ok
