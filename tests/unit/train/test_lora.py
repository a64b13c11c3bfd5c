"""chatforge's LoRA: PEFT adapters with one addmm in place of PEFT's multiply-and-add, same numbers."""

import torch

from chatforge.train.lora import _plain_adapter, add_lora


def _lora_model(tiny_model, dropout=0.0):
    from chatforge.models.load import load_model

    model = add_lora(load_model(str(tiny_model), dtype="float32").model, rank=4, alpha=8, dropout=dropout,
                     bf16=False)
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at zero: give the adapters something to add
            torch.nn.init.normal_(p, std=0.1)
    return model


def _loras(model):
    from peft.tuners.lora import Linear

    return [m for m in model.modules() if isinstance(m, Linear)]


def _output_and_grads(model, ids):
    model.zero_grad()
    out = model(input_ids=ids).logits
    out.square().mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_lean_forward_equals_pefts_forward(tiny_model):
    model = _lora_model(tiny_model)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    layers = _loras(model)
    assert layers and all(_plain_adapter(m) == "default" for m in layers)
    ours, our_grads = _output_and_grads(model, ids)
    for m in layers:  # back to PEFT's own forward
        del m.forward
    theirs, their_grads = _output_and_grads(model, ids)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert our_grads.keys() == their_grads.keys()
    assert all(torch.allclose(our_grads[k], their_grads[k], atol=1e-5) for k in our_grads)


def test_disabled_adapters_give_the_base_model(tiny_model):
    from chatforge.models.load import load_model

    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        base = load_model(str(tiny_model), dtype="float32").model(input_ids=ids).logits
        model = _lora_model(tiny_model)
        tuned = model(input_ids=ids).logits
        with model.disable_adapter():
            off = model(input_ids=ids).logits
    assert not torch.allclose(tuned, base, atol=1e-4)
    assert torch.allclose(off, base, atol=1e-6)


def test_dropout_keeps_pefts_path(tiny_model):
    """LoRA dropout is PEFT's: the lean forward steps aside, and dropout really runs while training."""
    model = _lora_model(tiny_model, dropout=0.5)
    assert all(_plain_adapter(m) is None for m in _loras(model))
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        model.train()
        a, b = model(input_ids=ids).logits, model(input_ids=ids).logits
        model.eval()
        c, d = model(input_ids=ids).logits, model(input_ids=ids).logits
    assert not torch.equal(a, b) and torch.equal(c, d)
