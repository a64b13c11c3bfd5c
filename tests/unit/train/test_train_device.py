"""Which device a training run uses: the one asked for, exactly one GPU per process, clear errors otherwise."""

import pytest
import torch

from chatforge.errors import ChatforgeError
from chatforge.models.load import pick_device
from chatforge.train.run import one_gpu


@pytest.fixture
def gpus(monkeypatch):
    """Pretend CUDA has 2 devices and has not started yet."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)


@pytest.mark.parametrize("asked, visible, chosen, device", [
    ("cuda:1", None, "1", "cuda"),       # the GPU asked for, not cuda:0
    ("cuda:1", "4,6", "6", "cuda"),      # counted within what the user already made visible
    ("cuda", None, "0", "cuda"),         # one GPU, not DataParallel over all of them
    (None, "3,5", "3", None),            # default: the first visible GPU (or the CPU when there is none)
])
def test_a_single_process_uses_exactly_one_gpu(gpus, monkeypatch, asked, visible, chosen, device):
    if visible:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert one_gpu(asked) == device
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == chosen


def test_cpu_is_left_alone(gpus):
    import os

    assert one_gpu("cpu") == "cpu" and "CUDA_VISIBLE_DEVICES" not in os.environ


def test_device_errors_name_the_device(gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    with pytest.raises(ChatforgeError, match="cuda:2.*CUDA_VISIBLE_DEVICES=4,6 shows 2"):
        one_gpu("cuda:2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ChatforgeError, match="each process uses the GPU of its local rank"):
        one_gpu("cuda:1")
    assert one_gpu("cuda") == "cuda"  # torchrun: each rank's own GPU
    with pytest.raises(ChatforgeError, match="there are 2 CUDA devices"):
        pick_device("cuda:2")
    for bad in ("gpu", "cuda:x", "cpu:0"):
        with pytest.raises(ChatforgeError, match="not a device name"):
            pick_device(bad)


def test_no_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ChatforgeError, match="sees no CUDA device"):
        pick_device("cuda")
    assert pick_device(None) == "cpu"


@pytest.mark.parametrize("bf16_ok", [True, False])
def test_a_gpu_trains_in_bf16_when_it_supports_it(monkeypatch, bf16_ok):
    from chatforge.train.run import use_bf16

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_ok)
    assert use_bf16("auto", "cuda") is bf16_ok
    assert use_bf16("fp32", "cuda") is False and use_bf16("bf16", "cpu") is True


def test_cpu_bf16_follows_the_cpu_flags_and_the_measured_speed(monkeypatch):
    """auto trains in bf16 on a CPU with bf16 instructions whose bf16 matmul is not much slower than fp32's;
    a CPU without them, or one (a VM showing avx512_bf16 without AMX) where bf16 runs at half speed, trains in fp32."""
    from pathlib import Path

    from chatforge.models import load
    from chatforge.train.run import use_bf16

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(load, "bf16_matmul_speed", lambda: 2.0)
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "flags: fpu sse avx2 avx512f")
    assert use_bf16("auto", "cpu") is False
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "flags: fpu avx512f avx512_bf16 amx_tile")
    assert use_bf16("auto", "cpu") is True
    monkeypatch.setattr(load, "bf16_matmul_speed", lambda: 0.55)
    assert use_bf16("auto", "cpu") is False
    assert use_bf16("bf16", "cpu") is True  # asked for: kept
