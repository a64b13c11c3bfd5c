"""Tokenizers for the three template families the loss-mask tests cover."""

import copy

import pytest

# The official Llama 3 Instruct template (no generation markers; trims content; BOS at the start).
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


@pytest.fixture(scope="session")
def llama3_tokenizer(tokenizer):
    """The tiny model's tokenizer dressed as Llama 3: its special tokens, template, BOS and EOS."""
    tok = copy.deepcopy(tokenizer)
    tok.add_tokens(["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
                   special_tokens=True)
    tok.bos_token = "<|begin_of_text|>"
    tok.eos_token = "<|eot_id|>"
    tok.chat_template = LLAMA3_TEMPLATE
    return tok


@pytest.fixture(scope="session")
def base_tokenizer(tiny_gpt2):
    """A base model's tokenizer: no template of its own, so chatforge's default template (EOS ends answers)."""
    from chatforge.models.load import load_tokenizer

    return load_tokenizer(str(tiny_gpt2))
