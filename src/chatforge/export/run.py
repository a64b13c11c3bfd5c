"""Export a model or training run: setup -> write into a temporary directory -> verify -> rename into place.

    export(ExportConfig(model="runs/lumora", format="gguf", quant="q8_0", out="exports/lumora", ollama=True))

Everything is written into `.OUT.partial-XXXX` next to OUT and renamed to OUT only after the written model
has been reloaded and checked, so an interrupted or failed export never leaves a directory at OUT that
looks valid. An existing OUT is refused unless `force`; with `force` an earlier export (a directory with
export.json) is replaced only after success, and any other existing path is never replaced.
A GGUF export may also go to a file (`--out lumora.gguf`, like llama.cpp's converter's `--outfile`): the
verified GGUF file (and with --ollama the `Modelfile` beside it) is then renamed into place, and --force
replaces an existing file of that name (without --ollama, also removing the Modelfile chatforge wrote for it).
A process killed mid-export can leave a hidden `.OUT.partial-*` directory behind: it is safe to delete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from chatforge.atomic import disk_full_error, is_disk_full, replace_dir, usual_modes
from chatforge.errors import ChatforgeError
from chatforge.export.config import DEFAULT_QUANT, FORMATS, QUANTS, ExportConfig

if TYPE_CHECKING:
    from chatforge.models.resolve import ResolvedModel

MANIFEST = "export.json"  # what was exported from what, and the verification numbers


@dataclass
class _Plan:
    cfg: ExportConfig
    resolved: "ResolvedModel"
    out: Path  # the final directory
    quant: str | None  # None for hf = the source dtype, decided once the model is loaded
    name: str  # file-name-safe model name, e.g. "lumora" for runs/lumora
    system: str | None = None  # the default system prompt put into the chat template (and the Modelfile)

    @property
    def to_file(self) -> bool:
        """--out names the .gguf file itself (the Modelfile goes beside it)."""
        return self.out.suffix.lower() == ".gguf"


def export(cfg: ExportConfig, on_event=None) -> Path:
    """Export cfg.model as cfg.format into cfg.out; return the output directory (or the .gguf file).
    `on_event` receives the chatforge.events of the export (a "message" per phase, then "done")."""
    return export_with_manifest(cfg, on_event)[0]


def export_with_manifest(cfg: ExportConfig, on_event=None) -> tuple[Path, dict]:
    """export(), also returning the manifest (what export.json holds; a .gguf --out has no export.json)."""
    from chatforge.events import Event, quiet

    emit = on_event or quiet

    def log(message: str) -> None:
        emit(Event("export", "message", message=message))

    plan = setup(cfg)
    from chatforge.export import hf
    from chatforge.export.verify import logits, probe_ids

    log(f"loading {plan.resolved.name}" + (" and merging its adapter" if plan.resolved.adapter else ""))
    loaded = hf.load_merged(plan.resolved, allow_pickle=cfg.allow_pickle)
    plan.quant = plan.quant or hf.source_quant(loaded)
    _default_system(plan, loaded.tokenizer, log)
    ids = probe_ids(loaded.tokenizer)
    reference = logits(loaded.model, ids)  # (T, V), taken before any cast
    stage = _stage_dir(plan.out)
    try:
        write = _write_hf if cfg.format == "hf" else _write_gguf
        artifact = write(plan, loaded, stage, log)
        check = None
        if cfg.verify:
            log("verifying: reloading the export and comparing its logits with the source")
            check = _verify(plan, artifact, ids, reference, loaded.tokenizer)
        info = _manifest(plan, stage, check)
        if plan.to_file:
            _commit_files(stage, plan.out, cfg.force)
        else:
            _inside(stage, MANIFEST).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
            _commit(stage, plan.out, cfg.force)
    except BaseException as e:
        shutil.rmtree(stage, ignore_errors=True)
        if is_disk_full(e):
            raise disk_full_error(plan.out, "export") from None
        raise
    emit(Event("export", "done", metrics={"out": str(plan.out)}))
    return plan.out, info


def _default_system(plan: _Plan, tokenizer, log) -> None:
    """Put the default system prompt (--system, else the one the run was trained with) into the chat template,
    so every tool that reads the export's template applies it to a conversation without a system message."""
    if not plan.system:
        return
    from chatforge.models.template import set_default_system

    if set_default_system(tokenizer, plan.system):
        log(f"default system prompt (used when a conversation has none): {plan.system}")
    else:
        log("note: this chat template cannot carry a default system prompt; it is kept in "
            + ("the Modelfile's SYSTEM" if plan.cfg.ollama else "chatforge.json (chatforge applies it) only"))


def setup(cfg: ExportConfig) -> _Plan:
    """Check every option and the model's architecture before loading anything heavy."""
    from chatforge.models.catalog import DEFAULT_MODEL
    from chatforge.models.resolve import resolve

    if cfg.format not in FORMATS:
        raise ChatforgeError(f"--format {cfg.format}: not supported; supported: {', '.join(FORMATS)}")
    quant = cfg.quant.lower() if cfg.quant else DEFAULT_QUANT[cfg.format]  # llama.cpp's spelling Q4_K_M too
    if quant is not None and quant not in QUANTS[cfg.format]:
        raise ChatforgeError(f"--quant {quant}: not supported for --format {cfg.format}; supported: "
                             f"{', '.join(QUANTS[cfg.format])}",
                             hint="for other k-quants, run llama.cpp's `llama-quantize` on the f16 GGUF"
                             if cfg.format == "gguf" else "for smaller files use --format gguf --quant q8_0")
    if cfg.ollama and cfg.format != "gguf":
        raise ChatforgeError("--ollama needs --format gguf (Ollama runs GGUF files)")
    out = _output_dir(cfg)
    resolved = resolve(cfg.model)
    if cfg.format == "gguf":
        from chatforge.export.gguf import check_architecture, check_quantizer

        check_architecture(resolved.path, resolved.name)
        check_quantizer(quant)
    if cfg.ollama:
        from chatforge.export.ollama import detect_template
        from chatforge.models.load import load_tokenizer

        detect_template(load_tokenizer(resolved))  # an untranslatable template fails now, not after converting
    spec = cfg.model or DEFAULT_MODEL
    name = safe_name(resolved.run_dir.name if resolved.run_dir else spec)
    system = cfg.system if cfg.system is not None else resolved.system_prompt
    if cfg.ollama and system and '"""' in system:  # SYSTEM """...""" cannot hold it: fail before converting
        raise ChatforgeError(('--system' if cfg.system is not None else f"{resolved.name}: the system prompt the "
                              "run was trained with") + ': a system prompt for a Modelfile cannot contain """',
                             hint="pass another --system TEXT (--system '' for none), or export without --ollama")
    return _Plan(cfg, resolved, out, quant, name, system or None)


def _output_dir(cfg: ExportConfig) -> Path:
    if not cfg.out:
        raise ChatforgeError("--out PATH is required: the directory to write the export into")
    out = Path(cfg.out).expanduser().absolute()
    if out.suffix.lower() == ".gguf":
        return _output_file(cfg, out)
    if not (out.exists() or out.is_symlink()):
        return out
    if not cfg.force:
        raise ChatforgeError(f"--out {cfg.out}: already exists", hint="pass --force to replace it (the old "
                             "one is kept until the new export has been written and verified)")
    # --force replaces earlier exports only: never a directory of other files (think `--out . --force`).
    if not out.is_dir() or out.is_symlink() or (any(out.iterdir()) and not (out / MANIFEST).is_file()):
        raise ChatforgeError(f"--out {cfg.out}: exists and is not a chatforge export (no {MANIFEST}); "
                             "not replacing it, even with --force", hint="choose a new --out directory")
    return out


def _output_file(cfg: ExportConfig, out: Path) -> Path:
    """--out NAME.gguf: the GGUF file itself, with the Modelfile (--ollama) beside it."""
    if cfg.format != "gguf":
        raise ChatforgeError(f"--out {cfg.out}: a .gguf file name needs --format gguf",
                             hint=f"add --format gguf, or give a directory: --out {out.with_suffix('')}")
    if out.is_dir():
        raise ChatforgeError(f"--out {cfg.out}: is a directory", hint="give a new .gguf file name")
    taken = [p for p in (out, out.parent / "Modelfile" if cfg.ollama else None)
             if p is not None and (p.exists() or p.is_symlink())]
    if taken and not cfg.force:
        raise ChatforgeError(f"--out {cfg.out}: {', '.join(str(p) for p in taken)} already exists",
                             hint="pass --force to replace it (only after the new export has been verified)")
    if any(p.is_dir() for p in taken):
        raise ChatforgeError(f"{taken[-1]}: is a directory; not replacing it, even with --force")
    return out


def _stage_dir(out: Path) -> Path:
    """A hidden temporary directory next to `out` (same file system, so the final rename is atomic)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as e:
        raise ChatforgeError(f"--out {out}: cannot write in {out.parent} ({e.strerror})") from None
    stage.chmod(0o755)  # mkdtemp makes it private; the export is an ordinary directory
    return stage


def safe_name(text: str) -> str:
    """A file-name-safe model name: the last path part, [A-Za-z0-9._-] only, never empty, '.' or '..'."""
    base = re.split(r"[\\/]+", str(text).strip().rstrip("/\\"))[-1]
    base = base[:-5] if base.lower().endswith(".gguf") else base
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip(".-")
    return base[:64] or "model"


def _inside(directory: Path, name: str) -> Path:
    """directory/name, refusing any name that would land outside directory."""
    path = directory / name
    if path.resolve().parent != directory.resolve():
        raise ChatforgeError(f"refusing to write {name!r}: it is not a plain file name", exit_code=1)
    return path


def _write_hf(plan: _Plan, loaded, stage: Path, log) -> Path:
    from chatforge.export.hf import save_hf

    log(f"writing a Hugging Face model ({plan.quant}) to {plan.out}")
    save_hf(loaded, stage, plan.quant)
    if plan.system:  # chatforge's own record, read back by `chatforge chat/serve` (the template has it too)
        _inside(stage, "chatforge.json").write_text(json.dumps({"system_prompt": plan.system}, ensure_ascii=False)
                                                    + "\n", encoding="utf-8")
    return stage


def _write_gguf(plan: _Plan, loaded, stage: Path, log) -> Path:
    from chatforge.export.gguf import K_QUANTS, convert, quantize
    from chatforge.export.hf import save_hf

    merged = _inside(stage, ".merged-f32")  # the converter's input; removed before the rename
    save_hf(loaded, merged, "f32")
    gguf_file = _inside(stage, plan.out.name if plan.to_file else f"{plan.name}-{plan.quant}.gguf")
    log(f"converting to GGUF ({plan.quant}) with llama.cpp's converter")
    if plan.quant in K_QUANTS:  # llama.cpp quantizes from f16, like `llama-quantize model-f16.gguf q4_k_m`
        f16 = _inside(stage, ".f16.gguf")
        convert(merged, f16, "f16", name=plan.name)
        shutil.rmtree(merged)
        log(f"quantizing to {plan.quant} with llama.cpp's quantizer")
        quantize(f16, gguf_file, plan.quant)
        f16.unlink()
    else:
        convert(merged, gguf_file, plan.quant, name=plan.name)
        shutil.rmtree(merged)
    if plan.cfg.ollama:
        from chatforge.export.ollama import modelfile

        # The template's default system prompt (the trained one when set above) becomes SYSTEM; '' = none.
        text = modelfile(loaded.tokenizer, gguf_file.name, system=plan.system or plan.cfg.system)
        _inside(stage, "Modelfile").write_text(text, encoding="utf-8")
    return gguf_file


def _verify(plan: _Plan, artifact: Path, ids: list[int], reference, tokenizer) -> dict:
    """Reload what was written, as a transformers user would, and compare (raises ChatforgeError)."""
    from chatforge.export.verify import compare, logits

    if plan.cfg.format == "hf":
        from chatforge.export.hf import load_hf_for_check

        model = load_hf_for_check(artifact)
    else:
        from chatforge.export.gguf import load_gguf_for_check, read_metadata

        meta = read_metadata(artifact)
        if meta["chat_template"] != tokenizer.chat_template:
            raise ChatforgeError(f"verification failed: {artifact.name} lacks the chat template", exit_code=1)
        try:
            model = load_gguf_for_check(artifact)
        except Exception as e:  # transformers' GGUF reader knows fewer variants than llama.cpp
            raise ChatforgeError(f"verification failed: transformers cannot read {artifact.name} back "
                                 f"({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]})", exit_code=1,
                                 hint="--no-verify keeps the file without this check") from None
    return compare(reference, logits(model, ids), plan.quant)


def _manifest(plan: _Plan, stage: Path, check: dict | None) -> dict:
    files = {p.name: p.stat().st_size for p in sorted(stage.iterdir()) if p.is_file()}
    return {"source": plan.cfg.model or plan.resolved.name, "format": plan.cfg.format, "quant": plan.quant,
            "files": files, "system_prompt": plan.system, "verification": check}


def _commit(stage: Path, out: Path, force: bool) -> None:
    """Rename the finished stage to out; an existing out (with force) is moved aside first, then deleted."""
    if (out.exists() or out.is_symlink()) and not force:
        raise ChatforgeError(f"{out}: appeared while exporting; not replaced (pass --force)")
    replace_dir(stage, out)


def _commit_files(stage: Path, out: Path, force: bool) -> None:
    """--out NAME.gguf: rename the verified GGUF (then the Modelfile) from the stage into place, each atomic.
    An export without a Modelfile replacing one with (--force) removes the Modelfile chatforge wrote for that
    GGUF: it would give the new weights the old export's template and system prompt."""
    from chatforge.export.ollama import written_for

    modelfile, beside = stage / "Modelfile", out.parent / "Modelfile"
    stale = force and not modelfile.is_file() and written_for(beside, out.name)
    usual_modes(stage)
    for src, dst in ((stage / out.name, out), (modelfile, beside)):
        if not src.is_file():
            continue
        if (dst.exists() or dst.is_symlink()) and not force:
            raise ChatforgeError(f"{dst}: appeared while exporting; not replaced (pass --force)")
        os.replace(src, dst)
    if stale:
        beside.unlink(missing_ok=True)
    shutil.rmtree(stage, ignore_errors=True)


def manifest(out: Path) -> dict:
    """The export.json of an export directory."""
    return json.loads((Path(out) / MANIFEST).read_text(encoding="utf-8"))
