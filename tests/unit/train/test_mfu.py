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


def test_an_mfu_over_100_percent_says_the_peak_was_measured_on_a_busy_machine(tmp_path, capsys):
    from chatforge.train.run import print_summary

    summary = {"steps": 8, "epochs": 1.0, "tokens_seen": 4000, "first_train_loss": 2.0, "final_train_loss": 1.0,
               "tokens_per_sec": 900.0, "wall_seconds": 10.0, "peak_tflops": 0.5}
    print_summary(tmp_path, dict(summary, mfu=0.42))
    quiet = capsys.readouterr().out
    assert "42.0 % of a 0.50 TFLOP/s matmul peak (measured)" in quiet and "busy" not in quiet
    print_summary(tmp_path, dict(summary, mfu=1.3))
    assert "130.0 % of a 0.50 TFLOP/s matmul peak (measured on a busy machine" in capsys.readouterr().out
