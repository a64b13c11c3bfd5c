"""Export a model or training run as files other tools load, optionally smaller.

  --format hf    the LoRA adapter merged into the base weights, as a plain Hugging Face model directory
                 (safetensors, config, tokenizer, chat template, generation config); --quant f32|bf16|f16
  --format gguf  one GGUF file for llama.cpp and Ollama (tokenizer and chat template inside);
                 --quant f16 (default) | bf16 | f32 | q8_0 (half the size of f16) | q5_k_m | q4_k_m (llama.cpp's
                 quantizer: pip install 'chatforge[llama-cpp]'); --ollama adds a Modelfile; --out may name the
                 .gguf file itself (the Modelfile goes beside it)
A run trained on conversations that share one system prompt exports with it as the default (in the chat
template and the Modelfile's SYSTEM), so other tools answer as chatforge does; --system changes it.

The export is written to a temporary directory, reloaded and compared with the source model, and only then
renamed to --out (an existing --out is refused unless --force). Examples:
  chatforge export runs/lumora --format hf --out exports/lumora-hf
  chatforge export runs/lumora --format gguf --quant q8_0 --ollama --out exports/lumora-gguf
  chatforge export runs/lumora --format gguf --quant q4_k_m --ollama --out exports/lumora-q4_k_m.gguf
"""

from chatforge.config import add_arguments as add_config_arguments
from chatforge.export.config import ExportConfig


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL_OR_RUN", nargs="?", default=None,
                        help="Model name, directory, .gguf file or run directory (default: smollm2-135m-instruct).")
    add_config_arguments(parser, ExportConfig)


def run(args) -> int:
    from chatforge.config import build
    from chatforge.events import ConsoleView
    from chatforge.export.run import export_with_manifest

    cfg = build(ExportConfig, args, model=args.model)
    out, info = export_with_manifest(cfg, ConsoleView())
    print(summary(out, info))
    return 0


def summary(out, info: dict) -> str:
    """What was written (with sizes), how well it matched the source, and how to use it."""
    lines = [f"Exported {info['source']} as {info['format']} ({info['quant']}) to {out}"]
    for name, size in info["files"].items():
        lines.append(f"  {name:<32} {_size(size):>10}")
    check = info.get("verification")
    if check:
        lines.append(f"Verified: logits differ from the source's by {check['nrmse']:.2%} (normalised RMS; "
                     f"allowed {check['tolerance']:.2%}); same next token at {check['top1_agreement']:.0%} "
                     "of the probe's positions")
    lines.append("Use it:")
    if info["format"] == "hf":
        lines += [f"  chatforge chat {out}",
                  f"  python -c \"from transformers import AutoModelForCausalLM; "
                  f"AutoModelForCausalLM.from_pretrained('{out}')\""]
    else:
        from pathlib import Path

        gguf = next(n for n in info["files"] if n.endswith(".gguf"))
        folder = Path(out).parent if str(out).lower().endswith(".gguf") else Path(out)
        name = gguf[:-5] if str(out).lower().endswith(".gguf") else gguf.rsplit('-', 1)[0]
        if "Modelfile" in info["files"]:
            lines.append(f"  ollama create {name.lower()} -f {folder}/Modelfile")
        lines += [f"  llama-cli -m {folder}/{gguf} -cnv", f"  chatforge chat {folder}/{gguf}"]
    if info.get("system_prompt"):
        lines.append(f"Default system prompt (when a conversation has none): {info['system_prompt']}")
    return "\n".join(lines)


def _size(n: float) -> str:
    unit = "B"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            break
        n /= 1024
    return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
