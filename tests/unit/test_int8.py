"""--quantize int8: torchao's int8 weights, PyTorch's int8 kernel for the few-row products (models/int8.py)."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchao")


def _quantized_linear(k: int, n: int, bias: bool = False):
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(k, n, bias=bias)).to(torch.bfloat16)
    quantize_(net, Int8WeightOnlyConfig())
    return net


@pytest.mark.parametrize("shape", [(1, 128), (3, 5, 128), (16, 128)])
@pytest.mark.parametrize("bias", [False, True])
def test_int8_kernel_computes_torchaos_product(shape, bias):
    """Few rows (a decode step) go through aten._weight_int8pack_mm: the same x @ (w_int8 * scale).T as torchao's
    dequantized matmul, up to bf16 rounding; any leading shape, with or without a bias."""
    from chatforge.models.int8 import Int8Linear

    net = _quantized_linear(128, 48, bias)
    layer = Int8Linear(net[0])
    x = torch.randn(*shape, dtype=torch.bfloat16)
    with torch.inference_mode():
        want = torch.nn.functional.linear(x, net[0].weight, net[0].bias).float()  # torchao's path
        got = layer(x).float()
    assert got.shape == want.shape
    assert (got - want).abs().max() <= 0.02 * want.abs().max()


def test_int8_kernel_is_for_few_rows_only(monkeypatch):
    """More than SMALL_ROWS rows (a prefill, a big batch) keep torchao's path, and so its exact result."""
    from chatforge.models import int8

    net = _quantized_linear(64, 32)
    layer = int8.Int8Linear(net[0])
    calls = []
    real = torch.ops.aten._weight_int8pack_mm
    monkeypatch.setattr(int8, "_int8_mm", lambda *a: calls.append(a[0].shape) or real(*a))
    with torch.inference_mode():
        x = torch.randn(int8.SMALL_ROWS + 1, 64, dtype=torch.bfloat16)
        assert torch.equal(layer(x), torch.nn.functional.linear(x, net[0].weight))
        layer(x[:2])
        assert layer(x[:0]).shape == (0, 32)  # no rows: torchao's path (the kernel is not asked for M = 0)
    assert calls == [(2, 64)]


def test_only_layers_the_kernel_takes_are_swapped():
    """K must be a multiple of 64 and N of 16 (the kernel's vector paths read out of bounds otherwise)."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    from chatforge.models.int8 import Int8Linear, use_int8_kernel

    net = torch.nn.Sequential(torch.nn.Linear(128, 64), torch.nn.Linear(64, 72), torch.nn.Linear(72, 64),
                              torch.nn.Linear(64, 32)).to(torch.bfloat16)
    quantize_(net, Int8WeightOnlyConfig())
    assert use_int8_kernel(net) == 2
    assert [type(m) is Int8Linear for m in net] == [True, False, False, True]
    assert hasattr(net[1].weight, "qdata")  # N = 72 (not a multiple of 16), K = 72 (of 64): torchao's path
    # a plain (unquantized) layer is never swapped
    assert use_int8_kernel(torch.nn.Sequential(torch.nn.Linear(64, 64))) == 0
    # nor a layer of an fp32 model: the kernel is fast for bf16 activations only (fp32: slower than torchao's path)
    fp32 = torch.nn.Sequential(torch.nn.Linear(128, 64))
    quantize_(fp32, Int8WeightOnlyConfig())
    assert use_int8_kernel(fp32) == 0 and hasattr(fp32[0].weight, "qdata")


def test_quantized_model_decodes_close_to_torchaos_and_every_linear_uses_the_kernel(tiny_model, monkeypatch):
    """The whole tiny model with --quantize int8: each decode step's logits match torchao's own eager path."""
    from chatforge.models import int8
    from chatforge.models.load import load_model

    loaded = load_model(str(tiny_model), dtype="bfloat16", quantize="int8")
    layers = [m for m in loaded.model.modules() if isinstance(m, int8.Int8Linear)]
    assert len(layers) == 2 * 7 + 1  # q k v o gate up down per layer, and the LM head
    ids = torch.tensor([[1, 5, 9, 33, 100]])
    with torch.inference_mode():
        got = loaded.model(input_ids=ids[:, :1]).logits.float()  # one token: the kernel
        monkeypatch.setattr(int8, "SMALL_ROWS", 0)  # torchao's path everywhere
        want = loaded.model(input_ids=ids[:, :1]).logits.float()
    assert (got - want).abs().max() <= 0.05 * want.abs().max()


def test_a_torch_without_a_working_kernel_keeps_torchaos_layers(monkeypatch):
    """The kernel is a private ATen op: where it is missing (or wrong), nothing is swapped and int8 still works."""
    from chatforge.models import int8

    assert int8.kernel_works()
    net = _quantized_linear(64, 32)
    monkeypatch.setattr(int8, "_int8_mm", None)
    assert not int8.kernel_works() and int8.use_int8_kernel(net) == 0
    monkeypatch.setattr(int8, "_int8_mm", lambda x, w, s: torch.zeros(x.shape[0], w.shape[0], dtype=x.dtype))
    assert not int8.kernel_works() and int8.use_int8_kernel(net) == 0
    assert hasattr(net[0].weight, "qdata")
    x = torch.randn(1, 64, dtype=torch.bfloat16)
    with torch.inference_mode():
        assert torch.isfinite(net(x)).all()
