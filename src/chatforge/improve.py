"""`chatforge improve RUN`: the feedback loop in one command, through the stages' public Python APIs.

    feedback on RUN since RUN was made (chatforge.store)  -> DPO pairs (KTO rows when there are only thumbs)
    a share held out (--holdout)                           -> RUN-k/feedback/{train,heldout}.jsonl
    train, starting from RUN (chatforge.train)             -> the candidate run RUN-k
    evaluate candidate vs RUN (chatforge.evaluate)         -> on the held-out feedback pairs, and on RUN's
                                                              own held-out set when its config names one
    verdict: worse than RUN on a headline metric beyond the noise (the 95% CI of the paired difference lies
    wholly on the worse side) -> say so, exit 1, delete the candidate; else it stays as RUN-2 (or --out).

Too little feedback is an error (exit 1) that says how much more is needed; nothing is trained then.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from chatforge.config import (check_values, fraction, non_negative_float, option, positive_float,
                              positive_int)
from chatforge.errors import ChatforgeError
from chatforge.events import Event, quiet

# metric -> +1 when higher is better, -1 when lower is better (the headline metrics of each evaluation)
HEADLINE_PAIRS = {"preference_accuracy": 1, "logprob_margin": 1}
HEADLINE_CHAT = {"rougeL": 1, "f1": 1, "token_accuracy": 1, "perplexity": -1}


@dataclass
class ImproveConfig:
    run: str | None = option(None, "The run to improve.", cli=False)
    out: str | None = option(None, "Where the improved run goes (default: RUN-2, or the next free RUN-N).")
    holdout: float = option(0.2, "Share of the feedback kept aside to evaluate on (at least 1 pair).",
                            parse=fraction)
    min_pairs: int = option(8, "Fewest preference pairs to train DPO on.", parse=positive_int)
    min_thumbs: int = option(16, "Fewest rated answers to train KTO on when there are too few pairs.",
                             parse=positive_int)
    beta: float = option(0.1, "DPO / KTO beta.", parse=positive_float)
    sft_weight: float = option(0.1, "Weight of the SFT loss on the chosen answers (corrections among them).",
                               parse=non_negative_float)
    max_steps: int | None = option(None, "Stop training after this many optimizer steps.", parse=positive_int)
    lr: float | None = option(None, "Learning rate (default: the trainer's for the method).", parse=positive_float)
    since: str | None = option(None, "Use feedback from this date on (default: since RUN was made).",
                               metavar="DATE")
    seed: int = option(0, "Seed of the held-out split and of training.")


@dataclass
class Verdict:
    ok: bool
    out: Path | None
    method: str
    counts: dict
    checks: list[dict] = field(default_factory=list)  # {"set", "metric", "value", "ci", "worse"}
    notes: list[str] = field(default_factory=list)


def run_created(run: Path) -> float | None:
    """When a run was made: its config.yaml is written when training starts."""
    cfg = run / "config.yaml"
    return cfg.stat().st_mtime if cfg.is_file() else None


def next_out(run: Path) -> Path:
    n = 2
    while (run.parent / f"{run.name}-{n}").exists():
        n += 1
    return run.parent / f"{run.name}-{n}"


def split(rows: list[dict], share: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held out): a seeded shuffle, at least one row held out."""
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    held = max(1, round(len(rows) * share))
    return rows[held:], rows[:held]


def gather(store, run: Path, cfg: ImproveConfig) -> tuple[str, list[dict], dict]:
    """(method, rows, counts) from the feedback on `run`, or an error saying how much more is needed."""
    from chatforge.store import export

    since = _since(cfg.since) if cfg.since else run_created(run)
    pairs = export.build(store, "dpo", style="trl", model=str(run), since=since)
    thumbs = export.build(store, "kto", model=str(run), since=since)
    counts = {"pairs": len(pairs.rows), "rated": len(thumbs.rows), "contradictions": len(pairs.contradictions)
              + len(thumbs.contradictions), "duplicates": len(pairs.duplicates) + len(thumbs.duplicates)}
    if len(pairs.rows) >= cfg.min_pairs:
        return "dpo", pairs.rows, counts
    if len(thumbs.rows) >= cfg.min_thumbs:
        return "kto", thumbs.rows, counts
    raise ChatforgeError(
        f"too little feedback on {run} to train on: {len(pairs.rows)} preference pairs (DPO needs "
        f"{cfg.min_pairs}: {cfg.min_pairs - len(pairs.rows)} more) and {len(thumbs.rows)} rated answers (KTO needs "
        f"{cfg.min_thumbs}: {cfg.min_thumbs - len(thumbs.rows)} more)",
        hint="collect more: thumbs, corrections or better-of-two picks on the chat page, arena votes "
             "(chatforge serve RUN --compare OTHER), or /good /bad /fix in chatforge chat", exit_code=1)


def _since(text: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ChatforgeError(f"--since {text}: not a date; use YYYY-MM-DD") from None


def judge(result: dict, headline: dict[str, int], name: str) -> list[dict]:
    """Each headline metric's paired delta (candidate - RUN) and whether it is worse beyond the noise."""
    checks = []
    for metric, sign in headline.items():
        d = (result.get("delta") or {}).get(metric)
        if not d or d.get("value") is None or None in d["ci"]:
            continue
        lo, hi = d["ci"]
        worse = hi < 0 if sign > 0 else lo > 0
        checks.append({"set": name, "metric": metric, "value": d["value"], "ci": [lo, hi], "worse": worse})
    return checks


def improve(cfg: ImproveConfig, store, on_event=None) -> Verdict:
    """Train a candidate on the feedback on cfg.run and judge it against the run. `on_event` receives the
    chatforge.events of improve ("message": what it trains, from what), of its training and of its evaluations;
    nothing is printed (the verdict is the caller's to show)."""
    check_values(cfg)  # the Python API's config gets the CLI's checks (--holdout in [0, 1), ...)
    run = Path(cfg.run).expanduser()
    if not run.is_dir():
        raise ChatforgeError(f"{cfg.run}: no such run directory", hint="improve takes a run that `chatforge train` "
                                                                       "finished, e.g. runs/NAME")
    if not (run / "final").is_dir():
        raise ChatforgeError(f"{cfg.run}: not a finished training run (no final/ in it)")
    run = run.resolve()
    method, rows, counts = gather(store, run, cfg)
    out = Path(cfg.out).expanduser().resolve() if cfg.out else next_out(run)
    if out.exists():
        raise ChatforgeError(f"--out {out}: already exists; pick another directory")
    train_rows, held_rows = split(rows, cfg.holdout, cfg.seed)
    if not train_rows:
        raise ChatforgeError(f"--holdout {cfg.holdout}: holding out {len(held_rows)} of the {len(rows)} feedback "
                             "rows leaves none to train on", hint="lower --holdout, or collect more feedback")
    work = out.parent / f".{out.name}.improving"
    shutil.rmtree(work, ignore_errors=True)
    try:
        return _train_and_judge(cfg, run, out, work, method, counts, train_rows, held_rows, on_event or quiet)
    except BaseException:  # never leave an unjudged run where it could be served as if it had passed the gate
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        raise


def _train_and_judge(cfg: ImproveConfig, run: Path, out: Path, work: Path, method: str, counts: dict,
                     train_rows: list[dict], held_rows: list[dict], emit) -> Verdict:
    from chatforge.evaluate.config import EvalConfig
    from chatforge.evaluate.run import evaluate
    from chatforge.store.export import write_jsonl
    from chatforge.train.config import TrainConfig
    from chatforge.train.run import train

    data = write_jsonl(train_rows, work / "feedback" / "train.jsonl")
    held = write_jsonl(held_rows, work / "feedback" / "heldout.jsonl")
    counts |= {"train": len(train_rows), "heldout": len(held_rows)}
    emit(Event("improve", "message", message=f"{method.upper()} on {len(train_rows)} of the feedback rows "
               f"({len(held_rows)} held out; {counts['pairs']} pairs, {counts['rated']} rated answers in all), "
               f"starting from {run}"))
    tcfg = TrainConfig(model=str(run), data=str(data), method=method, beta=cfg.beta, eval_split=0.0,
                       sft_weight=cfg.sft_weight if method == "dpo" else 0.0, max_steps=cfg.max_steps, lr=cfg.lr,
                       seed=cfg.seed, out=str(out), tensorboard=False)
    candidate = train(tcfg, on_event=emit)
    verdict = Verdict(ok=True, out=None, method=method, counts=counts)
    if method == "dpo":
        result = evaluate(EvalConfig(model=str(candidate), baseline=str(run), data=str(held),
                                     out=str(work / "eval-feedback"), seed=cfg.seed), on_event=emit)
        verdict.checks += judge(result, HEADLINE_PAIRS, "held-out feedback")
    else:
        verdict.notes.append("KTO on thumbs only: no held-out pairs to compare preference accuracy on")
    own = _run_eval_data(run)
    if own is not None:
        result = evaluate(EvalConfig(model=str(candidate), baseline=str(run), data=str(own),
                                     out=str(work / "eval-heldout"), seed=cfg.seed), on_event=emit)
        verdict.checks += judge(result, HEADLINE_CHAT, f"{run.name}'s held-out set")
    else:
        verdict.notes.append(f"{run.name} names no held-out set (eval_data) in its config: judged on feedback only")
    verdict.ok = not any(c["worse"] for c in verdict.checks)
    if verdict.ok:  # the data it was trained and judged on stays with the run
        for name in ("feedback", "eval-feedback", "eval-heldout"):
            if (work / name).is_dir():
                shutil.move(str(work / name), str(candidate / name))
        _relocate(candidate, work)
        verdict.out = candidate
    else:  # a worse run is not kept where it could be served by mistake
        shutil.rmtree(candidate, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return verdict


def _relocate(run: Path, work: Path) -> None:
    """The run's records (config.yaml, run.json, the model card, the evaluations' reports) name the feedback files
    where they were written, in the work directory; they now live in the run: name them there, so that
    `chatforge train --config RUN/config.yaml` repeats the run. (The training must read its data before the run
    directory exists: train refuses a --out that already holds other files.) Each file is replaced atomically."""
    import os

    old, new = str(work), str(run)
    records = [run / n for n in ("config.yaml", "run.json", "README.md", "events.jsonl")]
    records += [p for d in ("eval-feedback", "eval-heldout") for p in (run / d).glob("*")
                if p.suffix in (".json", ".md", ".html")]
    for path in records:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        if old in text:
            tmp = path.with_name(f".{path.name}.relocating")
            tmp.write_text(text.replace(old, new), encoding="utf-8")
            os.replace(tmp, path)


def _run_eval_data(run: Path) -> Path | None:
    import yaml

    try:
        cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None
    path = cfg.get("eval_data")
    return Path(path) if path and Path(path).is_file() else None
