"""Chat templates: the model's own when it has one, else chatforge's documented default.

The default template (for base models such as GPT-2) renders

    ### System:\n{system}\n\n### User:\n{question}\n\n### Assistant:\n{answer}<eos>\n\n

The end of an assistant turn is the tokenizer's EOS token: it is trained (labels) and generation stops there.
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

# Special tokens that end a turn in common template families (ChatML, Llama 3, Phi, Gemma, GPT-2/base).
_END_OF_TURN_CANDIDATES = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                           "<|end_of_text|>", "</s>", "<|eom_id|>")


def ensure_chat_template(tokenizer) -> bool:
    """Give a tokenizer without a chat template the default one (and a pad token). Returns True if it did."""
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(tokenizer, "chat_template", None):
        return False
    if tokenizer.eos_token is None:
        from chatforge.errors import ChatforgeError

        raise ChatforgeError("this tokenizer has neither a chat template nor an EOS token, so chatforge cannot "
                             "tell where an answer ends", hint="use a tokenizer with an EOS token")
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    return True


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
    return tokenizer(text, add_special_tokens=False)["input_ids"]
