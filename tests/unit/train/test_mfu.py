"""MFU bookkeeping: model FLOPs per token."""

import torch

from test_attention import _random_llama


def test_flops_per_token_counts_lora_at_4n_and_full_at_6n():
    from chatforge.train.lora import add_lora
    from chatforge.train.mfu import flops_per_token, matmul_params

    model = _random_llama(tie_word_embeddings=True)
    n = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert matmul_params(model) == (n, n)  # the tied head counts once
    assert flops_per_token(model) == 6 * n
    lora = add_lora(model, rank=2, alpha=4, dropout=0.0, bf16=False)
    total, trained = matmul_params(lora)
    assert total > n and 0 < trained < total - n + 1  # + the adapters, of which only they train
    assert flops_per_token(lora) == 4 * total + 2 * trained
