"""Load a model and its tokenizer (with a chat template) from any model argument."""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatforge.errors import ChatforgeError
from chatforge.models.resolve import ResolvedModel, resolve
from chatforge.models.template import ensure_chat_template


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel (or PeftModel when an adapter is kept unmerged)
    tokenizer: Any
    resolved: ResolvedModel
    notes: list[str] = field(default_factory=list)  # what the loader chose and the user should know (commands say it)

    @property
    def name(self) -> str:
        return self.resolved.name

    @property
    def device(self):
        return next(self.model.parameters()).device


def pick_device(device: str | None = None) -> str:
    """cuda when a GPU is there (unless told otherwise), else cpu; a device that is not there is a clear error."""
    import torch

    if not device:
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = device.partition(":")
    if kind == "cpu" and not index:
        return device
    if kind not in ("cuda", "mps") or (index and not index.isdigit()) or (kind == "mps" and index):
        raise ChatforgeError(f"--device {device}: not a device name", hint="use cpu, cuda, cuda:N or mps")
    backend = torch.cuda if kind == "cuda" else torch.backends.mps
    if not backend.is_available():
        shown = os.environ.get("CUDA_VISIBLE_DEVICES") if kind == "cuda" else None
        raise ChatforgeError(f"--device {device}: PyTorch {torch.__version__} sees no {kind.upper()} device here"
                             + (f" (CUDA_VISIBLE_DEVICES={shown})" if shown is not None else ""),
                             hint="use --device cpu (or install a PyTorch build for that GPU)")
    count = torch.cuda.device_count() if kind == "cuda" else 1
    if index and int(index) >= count:
        raise ChatforgeError(f"--device {device}: there {'is' if count == 1 else 'are'} {count} CUDA "
                             f"device{'s' if count != 1 else ''} (cuda:0 to cuda:{count - 1})",
                             hint="pick one of those, or set CUDA_VISIBLE_DEVICES")
    return device


def cpu_supports_bf16() -> bool:
    """This CPU has AMX or AVX-512 bf16 instructions (bf16 matmuls are not emulated; see cpu_prefers_bf16 for
    whether they are also the faster ones)."""
    import torch

    capability = (torch.backends.cpu.get_cpu_capability() or "").lower()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    return "amx" in capability or "bf16" in capability or "amx_bf16" in flags or "avx512_bf16" in flags


# bf16 stays the default while its matmul runs at >= this share of fp32's FLOP/s: it also halves the bytes of every
# weight (decoding) and activation (training), which a slightly slower kernel does not outweigh.
BF16_MIN_SPEED = 0.8


@functools.cache
def bf16_matmul_speed() -> float:
    """FLOP/s of a bf16 matmul / of the same fp32 one on this CPU, measured once per process (~50 ms): a
    (256, 576) @ (576, 1536) product (a default-model layer over a micro-batch's rows), the best of 5 of each,
    interleaved so that a busy moment slows both."""
    import time

    import torch

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(256, 576, generator=g), torch.randn(576, 1536, generator=g)
    best = {}
    for dtype in (torch.float32, torch.bfloat16) * 6:
        x, w = a.to(dtype), b.to(dtype)
        out = torch.empty(256, 1536, dtype=dtype)
        t = time.perf_counter()
        torch.mm(x, w, out=out)
        best[dtype] = min(best.get(dtype, float("inf")), time.perf_counter() - t)  # first of each: the warm-up
    return best[torch.float32] / max(best[torch.bfloat16], 1e-9)


def cpu_prefers_bf16() -> bool:
    """bf16 by default on this CPU: it has the instructions and a bf16 matmul measured here runs at >= 0.8x the
    speed of fp32's. Some machines (VMs that show avx512_bf16 but not AMX) run oneDNN's bf16 kernel at half
    fp32's speed: there bf16 would slow every matmul of training and decoding (measured on such an Intel Xeon: 79 vs
    150 GFLOP/s for a 1024^3 product on one core; the default LoRA step 72 vs 183 tokens/s on two)."""
    return cpu_supports_bf16() and bf16_matmul_speed() >= BF16_MIN_SPEED


def _torch_dtype(dtype: str | None, device: str, quantize: str | None = None):
    """auto: bf16 where the hardware runs it natively and fast (GPUs with bf16, CPUs where cpu_prefers_bf16), else
    fp32. Inference reads every weight once per token, so half the bytes is up to twice the tokens/s. With int8
    weights, bf16 wherever the CPU has the instructions: PyTorch's int8 kernel (models/int8.py) is fast for bf16
    activations only."""
    import torch

    if dtype in (None, "auto"):
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        if device != "cpu":
            return torch.float32
        bf16 = cpu_supports_bf16() if quantize == "int8" else cpu_prefers_bf16()
        return torch.bfloat16 if bf16 else torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise ChatforgeError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16") from None


def load_tokenizer(model: str | ResolvedModel | None = None, *, trust_remote_code: bool = False):
    """The tokenizer of a model, with a chat template (the default one when it has none) and a pad token."""
    resolved = model if isinstance(model, ResolvedModel) else resolve(model)
    from transformers import AutoTokenizer

    src = resolved.adapter if resolved.adapter and _has_tokenizer(resolved.adapter) else resolved.path
    try:
        tok = AutoTokenizer.from_pretrained(src, trust_remote_code=trust_remote_code)
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise ChatforgeError(f"{resolved.name}: its tokenizer needs custom code from the model's repository",
                                 hint="re-run with --trust-remote-code if you trust it") from None
        raise ChatforgeError(f"{resolved.name}: cannot load tokenizer ({e})") from None
    except OSError as e:
        raise ChatforgeError(f"{resolved.name}: cannot load tokenizer ({e})") from None
    ensure_chat_template(tok)
    return tok


def _has_tokenizer(d) -> bool:
    return any((d / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))


def load_model(model: str | ResolvedModel | None = None, *, dtype: str | None = None, device: str | None = None,
               trust_remote_code: bool = False, allow_pickle: bool = False, merge_adapter: bool = True,
               quantize: str | None = None) -> LoadedModel:
    """Load weights + tokenizer for inference (eval mode). An adapter is merged unless merge_adapter=False.

    dtype None/"auto" picks bf16 where the hardware runs it natively and fast (see _torch_dtype), else fp32.
    quantize="int8": int8 weight-only linear layers (torchao), on top of dtype for the rest.
    Only safetensors (or GGUF, converted) weights are read unless allow_pickle=True: pickle files can run code.
    """
    quiet_transformers()
    resolved = model if isinstance(model, ResolvedModel) else resolve(model)
    tokenizer = load_tokenizer(resolved, trust_remote_code=trust_remote_code)
    device = pick_device(device)
    torch_dtype = _torch_dtype(dtype, device, quantize)
    import torch

    # An adapter is merged in fp32 and the sum cast once: merging in bf16 would round twice, and the run would
    # answer differently from its own (fp32-merged) export.
    merge_fp32 = resolved.adapter is not None and merge_adapter and torch_dtype != torch.float32
    net = _load_weights(resolved, torch.float32 if merge_fp32 else torch_dtype, trust_remote_code, allow_pickle)
    notes = []
    if resolved.adapter is not None:
        net = _apply_adapter(net, resolved)
        error = rounding_error(net, torch_dtype) if merge_fp32 and dtype in (None, "auto") and not quantize else 0.0
        if error > ROUNDING_MAX_ERROR:  # --dtype auto chose bf16 for speed, not to lose the tuning: keep fp32
            merge_fp32, torch_dtype = False, torch.float32
            notes.append(f"answering in float32, not bfloat16: {resolved.name}'s change to the weights is below "
                         f"bfloat16's resolution (rounding would add {error:.1f}x as much noise as the change; a short "
                         "run changes them little), so in bfloat16 it would answer like its base model")
        if merge_adapter:
            net = net.merge_and_unload()
    if merge_fp32:  # parameters only, as from_pretrained(dtype=...) leaves them (buffers such as RoPE's stay fp32)
        for param in net.parameters():
            param.data = param.data.to(torch_dtype)
    net.to(device)
    net.eval()
    if quantize:
        quantize_weights(net, quantize, resolved.name)
    return LoadedModel(net, tokenizer, resolved, notes)


# --dtype auto keeps fp32 for an adapter whose change rounding to bf16 would drown in rounding noise
# (rounding_error: 1.0 is as much noise as change). Measured here on LoRA runs of the default model: 3 steps on
# MedQuAD 2.04 (its bf16 answers were the base model's, word for word; fp32's were not), 6 steps 1.41, 12 steps
# 0.96; the bundled demo's run 0.84 after 10 of its 108 steps (bf16 answered as fp32 did), 0.51 after 20, 0.37
# after 30.
ROUNDING_MAX_ERROR = 1.0


def rounding_error(net, dtype) -> float:
    """How much of an (unmerged PEFT) adapter's change rounding the merged weights to `dtype` destroys:
    ||round(W + D) - round(W) - D|| / ||D|| over its LoRA layers, D = the layer's delta weight (B A x scale).
    0: all of the change survives; 1 or more: it is gone, or drowned in rounding noise. bf16 keeps 8 bits of
    mantissa, so a change below ~1/256 of a weight vanishes when it is added to it."""
    import torch

    err = total = 0.0
    with torch.no_grad():
        for module in net.modules():
            if not hasattr(module, "get_delta_weight") or not hasattr(module, "base_layer"):
                continue
            weight = getattr(module.base_layer, "weight", None)
            for name in module.active_adapters:
                delta = module.get_delta_weight(name).float()
                if weight is None or delta.shape != weight.shape:
                    continue  # (not a plain linear layer's LoRA)
                w = weight.float()
                kept = (w + delta).to(dtype).float() - w.to(dtype).float()
                err += (kept - delta).pow(2).sum().item()
                total += delta.pow(2).sum().item()
    return (err / total) ** 0.5 if total else 0.0


QUANTIZATIONS = ("int8",)


def quantize_weights(net, method: str, name: str = "model") -> None:
    """int8 weight-only quantization of every nn.Linear, in place: torchao quantizes, models/int8.py multiplies."""
    if method not in QUANTIZATIONS:
        raise ChatforgeError(f"--quantize {method}: unknown method", hint="use --quantize int8")
    import logging

    # torchao logs a warning for each optional CUDA kernel library it cannot load on a CPU-only machine
    for logger in ("torchao", "torch.utils._pytree"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except ImportError:
        raise ChatforgeError("--quantize int8 needs torchao, which is not installed",
                             hint="pip install 'chatforge[quantize]'  (or: pip install torchao)") from None
    try:
        quantize_(net, Int8WeightOnlyConfig())
    except Exception as e:  # an architecture torchao cannot handle
        raise ChatforgeError(f"{name}: cannot quantize to int8 ({type(e).__name__}: {e})") from None
    from chatforge.models.int8 import use_int8_kernel

    use_int8_kernel(net)  # decode steps through PyTorch's int8 kernel instead of torchao's per-call bf16 copy


def _load_weights(resolved: ResolvedModel, torch_dtype, trust_remote_code: bool, allow_pickle: bool):
    from transformers import AutoModelForCausalLM

    if not allow_pickle and not any(p.suffix == ".safetensors" for p in resolved.path.iterdir()):
        raise ChatforgeError(f"{resolved.name}: {resolved.path} has no .safetensors weights; pickle weights "
                             "(.bin/.pt) can run arbitrary code when loaded",
                             hint="re-run with --allow-pickle if you trust this model")
    try:
        return AutoModelForCausalLM.from_pretrained(
            resolved.path, dtype=torch_dtype, trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True)
    except ValueError as e:
        msg = str(e)
        if "trust_remote_code" in msg:
            raise ChatforgeError(f"{resolved.name}: this model needs custom code from its repository",
                                 hint="re-run with --trust-remote-code if you trust it") from None
        if "Unrecognized configuration class" in msg or "does not recognize this architecture" in msg:
            raise ChatforgeError(f"{resolved.name}: not a causal (decoder-only) language model that transformers "
                                 "can load for text generation") from None
        raise ChatforgeError(f"{resolved.name}: cannot load model ({msg.splitlines()[0]})") from None
    except OSError as e:
        raise ChatforgeError(f"{resolved.name}: cannot load model weights ({e})") from None
    except Exception as e:  # safetensors' own error: a header larger than the file, a truncated file, ...
        if type(e).__name__ != "SafetensorError":
            raise
        raise ChatforgeError(f"{resolved.name}: cannot load model weights from {resolved.path}: not a valid "
                             f"safetensors file ({e})") from None


def _apply_adapter(net, resolved: ResolvedModel):
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(net, str(resolved.adapter))
    except Exception as e:  # a broken or mismatched adapter
        raise ChatforgeError(f"{resolved.adapter}: cannot apply this adapter to {resolved.path} ({e})") from None


def quiet_transformers() -> None:
    """No per-tensor progress bars or advisory warnings from transformers: chatforge prints its own progress."""
    import warnings

    from transformers.utils import logging as hf_logging

    # e.g. `is_gradient_checkpointing` deprecation, raised inside transformers when peft merges an adapter
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@contextmanager
def quiet_gguf_reading():
    """Reading a GGUF file with transformers, without its tensor-by-tensor progress bar ("Converting and
    de-quantizing GGUF tensors..."): transformers draws that one with a bare tqdm, which its disable_progress_bar()
    does not reach, on sys.stderr. So the read runs with sys.stderr pointed at a buffer (the process's own stream;
    nothing in the library is changed); chatforge says itself what it converts. Logging handlers keep their
    stream, and a failure is raised as always."""
    import contextlib
    import io

    quiet_transformers()
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def set_threads() -> None:
    """torch's intra-op threads: --threads / CHATFORGE_THREADS / OMP_NUM_THREADS, else the cores that are really
    free (affinity, cgroup quota, minus cores other processes keep busy): see chatforge/threads.py."""
    from chatforge import threads

    threads.set_threads()
