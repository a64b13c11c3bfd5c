"""Conversations and raw text -> token ids + labels. The ONLY place where labels (loss masks) are made.

A chat is rendered with the tokenizer's chat template, exactly as at inference time, and tokenized once. Which
tokens are trained is decided on the rendered TEXT, then mapped to tokens through the tokenizer's character
offsets, so it works for any template (no `{% generation %}` markers needed):

    prefix_k = render(messages[:k], add_generation_prompt=True)   ends with the assistant header of message k
    upto_k   = render(messages[:k+1])                              ends after message k's end-of-turn
    trained span of message k = [len(prefix_k), end of the last end-of-turn token inside upto_k)

So the header ("<|im_start|>assistant\\n", "<|start_header_id|>assistant<|end_header_id|>\\n\\n", "### Assistant:\\n")
is never trained, the answer and the token that ends it (<|im_end|>, <|eot_id|>, EOS) always are, and whatever
the template injects (a default system prompt, dates) is part of the prefixes and stays untrained.
Templates that are not prefix-stable (they render early turns differently once later turns exist) fall back
to finding each message's content in the full text, in order (`_spans_by_search`).
"""

from __future__ import annotations

from dataclasses import dataclass

from chatforge.errors import ChatforgeError
from chatforge.models.template import end_of_turn_ids, render, tokenize_chat

IGNORE = -100  # label of a position that takes no loss (PyTorch's cross-entropy ignore_index)


class TemplateError(ChatforgeError):
    """The chat template refused or mangled one conversation (a per-example problem, reported by line)."""


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]  # same length as input_ids, unshifted (the model shifts); IGNORE where no loss is taken
    position_ids: list[int] | None = None  # set by packing; None = 0..n-1

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def trained(self) -> int:
        """Number of positions that take a loss."""
        return sum(1 for t in self.labels if t != IGNORE)


_TOOL_KEYS = ("tool_calls", "tool_call_id", "name")


def _plain(messages: list[dict]) -> list[dict]:
    """Only role, content and the tool-call keys reach the template (chatforge keys such as "weight" must not
    change the text)."""
    return [{"role": m["role"], "content": m["content"]} | {k: m[k] for k in _TOOL_KEYS if m.get(k)}
            for m in messages]


def _eot_strings(tokenizer) -> list[str]:
    """End-of-turn token strings (<|im_end|>, <|eot_id|>, EOS ...)."""
    return [tokenizer.convert_ids_to_tokens(i) for i in end_of_turn_ids(tokenizer)]


def trained_spans(tokenizer, messages: list[dict], tools: list[dict] | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The full rendered text and the character spans [start, end) to train: each trained assistant answer
    (its text and its tool calls) together with the end-of-turn token that closes it. Tool results, tool
    definitions, system and user turns are never trained: they are in the prefixes."""
    msgs = _plain(messages)
    tools = tools if tools is not None else getattr(messages, "tools", None)
    full = _render(tokenizer, msgs, False, tools)
    eots = _eot_strings(tokenizer)
    spans = []
    for k, m in enumerate(messages):
        if m["role"] != "assistant" or m.get("weight", 1) == 0:
            continue
        if k == 0:  # an answer with no prompt before it: no prefix to render, find it instead
            return full, _spans_by_search(full, messages, eots)
        prefix = _render(tokenizer, msgs[:k], True, tools)
        upto = _render(tokenizer, msgs[:k + 1], False, tools)
        if not (full.startswith(upto) and upto.startswith(prefix)):
            return full, _spans_by_search(full, messages, eots)
        ends = [upto.rfind(e, len(prefix)) + len(e) for e in eots if upto.rfind(e, len(prefix)) >= 0]
        # No end-of-turn token (an odd template): train the answer text without trailing whitespace.
        end = max(ends) if ends else len(upto.rstrip())
        if end > len(prefix):
            spans.append((len(prefix), end))
    return full, spans


def _render(tokenizer, messages: list[dict], add_generation_prompt: bool, tools: list[dict] | None = None) -> str:
    try:
        return render(tokenizer, messages, add_generation_prompt=add_generation_prompt, tools=tools)
    except Exception as e:  # jinja2 errors, raise_exception() inside templates: the template refuses this chat
        raise TemplateError(f"the chat template refused this conversation ({type(e).__name__}: {e})") from None


def _spans_by_search(full: str, messages: list[dict], eots: list[str]) -> list[tuple[int, int]]:
    """For templates that render a conversation differently from its beginning (e.g. ones that drop earlier
    reasoning or number the turns): find each message's content in order in the full text; a trained span
    runs from an answer's first character to the end of the first end-of-turn token after it."""
    spans, cursor = [], 0
    for m in messages:
        content = m["content"].strip() or next((c["function"]["name"] for c in m.get("tool_calls") or []), "")
        pos = full.find(content, cursor)
        if pos < 0:
            raise TemplateError(f"the chat template changes the text of a {m['role']} message, so chatforge "
                                 "cannot tell which tokens are the assistant's",
                                 hint="use chatforge's default template or a model whose template keeps messages")
        cursor = pos + len(content)
        if m["role"] == "assistant" and m.get("weight", 1) != 0:
            ends = [full.find(e, cursor) + len(e) for e in eots if full.find(e, cursor) >= 0]
            spans.append((pos, min(ends) if ends else cursor))
    return spans


def _labels_from_spans(ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """A token is trained when its characters overlap a trained span."""
    labels = [IGNORE] * len(ids)
    for i, (tok, (a, b)) in enumerate(zip(ids, offsets)):
        if any(a < e and b > s for s, e in spans):
            labels[i] = tok
    return labels


def encode_chat(tokenizer, messages: list[dict], *, max_length: int | None = None,
                overlong: str = "drop", tools: list[dict] | None = None) -> Encoded | None:
    """One conversation -> Encoded with labels on assistant answers + their end-of-turn token. `tools` (default:
    the conversation's own, see data.toolcalls.Chat) are rendered as chatforge.models.tools describes.

    overlong (when longer than max_length): "drop" -> None, "error" -> ChatforgeError, "truncate" -> cut the
    end off; an example whose cut leaves no trained token is dropped (None) rather than kept with nothing to learn.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ChatforgeError("chatforge needs a fast (Rust) tokenizer to compute loss masks",
                             hint="use a model that ships a tokenizer.json")
    tools = tools if tools is not None else getattr(messages, "tools", None)
    text, spans = trained_spans(tokenizer, messages, tools)
    # special-token strings inside a message ("<|im_end|>" quoted by a FAQ) are text, not an end of turn
    ids, offsets = tokenize_chat(tokenizer, text, _plain(messages), tools=tools, add_generation_prompt=False)
    full = Encoded(ids, _labels_from_spans(ids, offsets, spans))
    return apply_overlong(full, max_length, overlong)


def apply_overlong(example: Encoded, max_length: int | None, overlong: str) -> Encoded | None:
    """The over-long policy: keep (fits), None (drop), ChatforgeError (error) or cut to max_length (truncate;
    None when the cut would leave no trained token)."""
    if overlong not in ("drop", "truncate", "error"):
        raise ValueError(f"overlong must be drop, truncate or error, not {overlong!r}")
    if max_length is None or len(example) <= max_length:
        return example
    if overlong == "error":
        raise ChatforgeError(f"example has {len(example)} tokens, more than --max-length {max_length}")
    if overlong == "drop":
        return None
    cut = Encoded(example.input_ids[:max_length], example.labels[:max_length])
    return cut if cut.trained else None


def encode_text(tokenizer, texts: list[str], block_size: int) -> list[Encoded]:
    """Continued pretraining: documents joined with EOS between them, cut into blocks of block_size tokens
    (the last block may be shorter). Every token is trained."""
    if tokenizer.eos_token_id is None:
        raise ChatforgeError("this tokenizer has no EOS token to separate documents")
    stream: list[int] = []
    for text in texts:
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        stream.append(tokenizer.eos_token_id)
    blocks = [stream[i:i + block_size] for i in range(0, len(stream), block_size)]
    return [Encoded(list(b), list(b)) for b in blocks if len(b) > 1]  # one token alone predicts nothing
