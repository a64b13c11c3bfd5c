"""`chatforge eval`: did fine-tuning help? setup -> answer (each model) -> score -> save the report.

For every held-out conversation the prompt is everything before its LAST assistant message (system prompt,
earlier turns, the last user turn) and the reference is that message. Each model answers greedily in batches
(`Engine.chat_batch`: left padding, stopping at end-of-turn per example); its answers are scored against the
references, and the references themselves are scored under the model with teacher forcing (perplexity and
token accuracy on exactly the tokens training learns). Then the tuned model is compared with its base by a
paired bootstrap over the examples.
"""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chatforge.config import check_values, to_dict
from chatforge.errors import ChatforgeError
from chatforge.events import Event, Progress, quiet
from chatforge.evaluate import metrics as M
from chatforge.evaluate.config import EvalConfig

_NO_BASELINE = ("none", "")


@dataclass
class Case:
    """One held-out conversation, split into what the model sees and what it should answer."""

    index: int  # position among the held-out file's conversations (0-based)
    prompt: list[dict]  # messages before the reference answer
    reference: str  # the last assistant message
    tools: list[dict] | None = None  # the tools the conversation offers (evaluate/tools.py)
    calls: list[dict] = field(default_factory=list)  # the reference answer's tool calls

    @property
    def question(self) -> str:
        return next((m["content"] for m in reversed(self.prompt) if m["role"] == "user"), "")

    @property
    def messages(self) -> list[dict]:
        from chatforge.data.toolcalls import Chat

        answer = {"role": "assistant", "content": self.reference} | ({"tool_calls": self.calls} if self.calls else {})
        return Chat(self.prompt + [answer], self.tools)


@dataclass
class Plan:
    """Everything `setup` checked before any model is loaded."""

    model: str
    baseline: str | None
    run_dir: Path | None
    out: Path
    cases: list[Case]
    max_tokens: int  # cfg.max_tokens, or derived from the reference answers
    notes: list[str]  # what the report should say about the data (skipped conversations)


# ---- setup -------------------------------------------------------------------------------------------------
def cases_from_records(records: list[list[dict]]) -> list[Case]:
    """Conversations -> Cases; a conversation without an assistant answer after a user turn has nothing to
    score and is skipped (anything after its last assistant message is ignored)."""
    from chatforge.data.toolcalls import tools_of

    cases = []
    for i, messages in enumerate(records):
        last = max((k for k, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
        prompt = [{k: m[k] for k in ("role", "content", "tool_calls", "tool_call_id") if k in m}
                  for m in messages[:last]]
        if last > 0 and any(m["role"] == "user" for m in prompt):
            cases.append(Case(i, prompt, messages[last]["content"], tools_of(messages),
                              list(messages[last].get("tool_calls") or [])))
    return cases


def load_cases(path: str, tokenizer, max_examples: int | None, columns=None,
               column_separator: str | None = None, emit=quiet, lenient: bool = False) -> tuple[list[Case], list[str]]:
    """Read and validate the held-out file with the data layer (any format `chatforge check` reads).
    Strict: any invalid row is an error naming its file:line; lenient: invalid rows are skipped and named."""
    from chatforge.data import analyse
    from chatforge.plural import counted

    prepared, report = analyse(path, tokenizer, max_length=1 << 30, columns=columns,  # no length drops here
                               column_separator=column_separator, format_option=False)  # eval has no --format
    notes, invalid = [], counted(len(report.errors), "invalid row")
    if report.errors and not lenient:
        raise ChatforgeError(f"{path}: {invalid}; nothing was evaluated\n"
                             + report.summary(), hint="see `chatforge check " + str(path) + "`, or pass --lenient "
                                                      "to evaluate the valid ones")
    if report.errors:
        notes.append(f"Skipped {invalid} of {path} (--lenient): "
                     + "; ".join(report.summary().splitlines()))
        emit(Event("eval", "message", message=notes[-1]))
    if prepared.kind != "chat":
        raise ChatforgeError(f"{path}: held-out data must be conversations (chat, ShareGPT, alpaca, Q&A), "
                             "not raw text", hint="the eval loss of continued pretraining is in the run's "
                                                  "metrics.jsonl")
    cases = cases_from_records(prepared.records)
    if not cases:
        raise ChatforgeError(f"{path}: no conversation has an assistant answer to compare with")
    if len(cases) < len(prepared.records):
        notes.append(f"Skipped {len(prepared.records) - len(cases)} conversations of {path} that have no assistant "
                     "answer after a user turn.")
        emit(Event("eval", "message", message=notes[-1]))
    return (cases[:max_examples] if max_examples else cases), notes


def default_baseline(resolved) -> str | None:
    """The base model of a run (run.json) or adapter (chatforge.json / adapter_config.json); else None."""
    from chatforge.models.resolve import adapter_base

    if resolved.run_dir is not None:
        try:
            base = json.loads((resolved.run_dir / "run.json").read_text(encoding="utf-8")).get("base_model")
        except (OSError, json.JSONDecodeError, AttributeError):
            base = None
        if base:
            return str(base)
    if resolved.adapter is not None:
        return adapter_base(resolved.adapter)
    chatforge_json = resolved.path / "chatforge.json"  # a fully fine-tuned model records its base here
    if chatforge_json.is_file():
        try:
            return json.loads(chatforge_json.read_text(encoding="utf-8")).get("base_model")
        except (OSError, json.JSONDecodeError):
            return None
    return None


def resolve_baseline(cfg: EvalConfig, resolved) -> str | None:
    """The model to compare with (--baseline, else the run's or adapter's base; None for 'none'), resolved now,
    not after the first model has been evaluated; an error says it is the baseline that is missing."""
    from chatforge.models.resolve import resolve

    if cfg.baseline is None:
        baseline, where = default_baseline(resolved), f"the base model of {cfg.model} (the default --baseline)"
    else:
        baseline = None if cfg.baseline.lower() in _NO_BASELINE else cfg.baseline
        where = "--baseline"
    if baseline is not None:
        try:
            resolve(baseline)
        except ChatforgeError as e:
            raise ChatforgeError(f"{where}: {e.message}", hint=e.hint or "pass another --baseline MODEL, or "
                                 "--no-baseline to evaluate the model alone", exit_code=e.exit_code) from None
    return baseline


def check_out_dir(out: Path) -> None:
    """Refuse to replace a directory that is not an earlier report (e.g. --out . by mistake)."""
    ours = {"metrics.json", "report.md", "report.html", "loss_curve.png"}
    if out.is_file() or (out.is_dir() and any(p.name not in ours for p in out.iterdir())):
        raise ChatforgeError(f"--out {out}: exists and is not a chatforge eval report; it would be replaced",
                             hint="choose a new or empty directory")
    import os

    # The report is written after every answer was generated: a path that cannot be created fails now.
    existing = next(p for p in out.absolute().parents if p.exists())
    if not existing.is_dir():
        raise ChatforgeError(f"--out {out}: {existing} is a file, not a directory", hint="choose another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ChatforgeError(f"--out {out}: cannot write in {existing} (permission denied)",
                             hint="choose another --out")


def setup(cfg: EvalConfig, emit=quiet) -> Plan:
    """Check every input (model, baseline, data, output) before loading any weights."""
    from chatforge.models.load import load_tokenizer
    from chatforge.models.resolve import resolve

    check_values(cfg)  # the Python API's config gets the CLI's checks (--batch-size >= 1, ...)
    if not cfg.model:
        raise ChatforgeError("no model given: chatforge eval MODEL_OR_RUN --data HELDOUT")
    if not cfg.data:
        raise ChatforgeError("--data is required: a file of held-out conversations")
    if not Path(cfg.data).exists():
        raise ChatforgeError(f"--data {cfg.data}: no such file or directory")
    resolved = resolve(cfg.model)
    baseline = resolve_baseline(cfg, resolved)
    tokenizer = load_tokenizer(resolved, trust_remote_code=cfg.trust_remote_code)
    cases, notes = load_cases(cfg.data, tokenizer, cfg.max_examples, cfg.columns, cfg.column_separator, emit,
                              lenient=cfg.lenient)
    notes += apply_system_prompt(cases, resolved.system_prompt)
    out = Path(cfg.out) if cfg.out else (resolved.run_dir / "eval" if resolved.run_dir else Path("eval-report"))
    check_out_dir(out)
    max_tokens = cfg.max_tokens or auto_max_tokens(tokenizer, cases)
    return Plan(cfg.model, baseline, resolved.run_dir, out, cases, max_tokens, notes)


def apply_system_prompt(cases: list[Case], system: str | None) -> list[str]:
    """Give the conversations without a system message the one the model was trained with (in place), as chat
    and serve do; both models (tuned and base) are then asked the same conversations. Returns report notes."""
    from chatforge.models.template import with_system

    missing = [c for c in cases if not any(m["role"] == "system" for m in c.prompt)]
    if not system or not missing:
        return []
    for c in missing:
        c.prompt = with_system(c.prompt, system)
    return [f"{len(missing)} of {len(cases)} held-out conversations have no system message: they were asked with "
            f"the one the model was trained with ({system!r}), as chat and serve do."]


def auto_max_tokens(tokenizer, cases: list[Case]) -> int:
    """Room for twice the longest reference: enough for any fitting answer, without letting a model that
    never stops run for hundreds of tokens on every example (it still counts as not stopping)."""
    longest = max(len(tokenizer(c.reference, add_special_tokens=False)["input_ids"]) for c in cases)
    return max(64, 2 * longest)


# ---- answer and score one model ----------------------------------------------------------------------------
def run_model(spec: str, plan: Plan, cfg: EvalConfig, label: str,
              emit=quiet) -> tuple[list, np.ndarray, list, object]:
    """Load one model, answer every case greedily, and score the references under it.
    Returns (Completions, (N, 3) [nll_sum, correct, answer_tokens] of the references, the tool calls parsed
    from each answer, the model's tool format)."""
    from chatforge.models.template import encode_prompt
    from chatforge.models.tools import has_tool_parts, parse_calls, tool_format

    from chatforge.evaluate.likelihood import answer_likelihood
    from chatforge.infer import Engine, SamplingParams
    from chatforge.models.load import load_model, set_threads

    set_threads()
    emit(Event("eval", "message", message=f"loading {label} model {spec}"))
    loaded = load_model(spec, dtype=cfg.dtype, device=cfg.device, trust_remote_code=cfg.trust_remote_code,
                        quantize=cfg.quantize)
    for note in loaded.notes:
        emit(Event("eval", "message", message=f"{label}: {note}"))
    engine = Engine(loaded, max_batch_size=cfg.batch_size)
    params = SamplingParams(max_tokens=plan.max_tokens, temperature=0.0)
    bar = Progress(emit, "eval", len(plan.cases), f"{label}: answering")
    if any(c.tools or has_tool_parts(c.prompt) for c in plan.cases):  # prompts with tool definitions
        prompts = [encode_prompt(loaded.tokenizer, c.prompt, tools=c.tools) for c in plan.cases]
        completions = engine.generate(prompts, [params] * len(prompts), on_done=bar.update)
    else:
        completions = engine.chat_batch([c.prompt for c in plan.cases], params, on_done=bar.update)
    fmt = tool_format(loaded.tokenizer)
    calls = [parse_calls(x.text, fmt, c.tools)[1] if c.tools else [] for x, c in zip(completions, plan.cases)]
    bar = Progress(emit, "eval", len(plan.cases), f"{label}: scoring references")
    # Full-vocabulary logits are (B, T, V) floats: keep B small.
    likelihood = answer_likelihood(loaded.model, loaded.tokenizer, [c.messages for c in plan.cases],
                                   batch_size=min(cfg.batch_size, 4), max_length=engine.context_length,
                                   on_done=bar.update)
    del engine, loaded
    gc.collect()
    return completions, likelihood, calls, fmt


def system_metrics(completions, likelihood: np.ndarray, references: list[str], cases: list[Case] | None = None,
                   calls: list | None = None, fmt=None) -> dict:
    """name -> (per-example stats, aggregate) for every metric of one model. With tool data (cases that offer
    tools), the references include their calls in the model's format, and the tool-call metrics are added."""
    from chatforge.evaluate.tools import reference_text, tool_metrics

    answers = [c.text for c in completions]
    tool_data = bool(cases) and any(c.tools for c in cases)
    if tool_data:
        references = [reference_text(c.reference, c.calls, fmt) for c in cases]
    out = M.text_metrics(answers, references)
    if tool_data:
        out |= tool_metrics(calls, [c.calls for c in cases], [bool(c.tools) for c in cases])
    out["perplexity"] = (likelihood[:, [0, 2]], M.perplexity)
    out["token_accuracy"] = (likelihood[:, [1, 2]], M.ratio(100.0))
    out["answer_tokens"] = (M.as_mean([len(c.token_ids) for c in completions]), M.ratio())
    out["answer_words"] = (M.as_mean([len(M.split_cjk(a)) for a in answers]), M.ratio())
    out["stop_rate"] = (M.as_mean([c.finish_reason == "stop" for c in completions]), M.ratio(100.0))
    return out


def example_rows(cases: list[Case], systems: dict[str, tuple[list, dict]]) -> list[dict]:
    """One row per example: question, reference and, per model, its answer and its own scores."""
    rows = []
    for i, case in enumerate(cases):
        row = {"index": case.index, "question": case.question, "reference": case.reference}
        if case.tools:
            row["reference_calls"] = _shown_calls(case.calls)
        for label, (completions, stats, *calls) in systems.items():
            c = completions[i]
            row[label] = {"answer": c.text, "finish_reason": c.finish_reason}
            if case.tools and calls:
                row[label]["tool_calls"] = _shown_calls(calls[0][i])
            # No per-example BLEU: a short exact answer has no 4-grams and would score 0 on its own.
            row[label].update({k: M.json_number(agg(s[i])) for k, (s, agg) in stats.items() if k != "bleu"})
        rows.append(row)
    return rows


def _shown_calls(calls: list[dict]) -> list[dict]:
    return [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in calls]


# ---- the whole evaluation ----------------------------------------------------------------------------------
def evaluate(cfg: EvalConfig, on_event=None) -> dict:
    """Evaluate cfg.model (and its baseline) on cfg.data; write the report to the output directory and
    return the result (what metrics.json holds). `on_event` receives the chatforge.events of the evaluation
    (messages, per-task progress, done)."""
    from chatforge.evaluate.report import write_report

    if cfg.model and cfg.data and Path(cfg.data).exists():
        from chatforge.data.preference import is_preference_data

        if is_preference_data(cfg.data):  # pairs: preference accuracy and log-prob margin (evaluate/preference.py)
            from chatforge.evaluate.preference import evaluate_preferences

            return evaluate_preferences(cfg, on_event)
    emit = on_event or quiet
    plan = setup(cfg, emit)
    references = [c.reference for c in plan.cases]
    labels = {"tuned": plan.model} | ({"base": plan.baseline} if plan.baseline else {})
    systems = {}
    for label, spec in labels.items():
        completions, likelihood, calls, fmt = run_model(spec, plan, cfg, label, emit)
        systems[label] = (completions, system_metrics(completions, likelihood, references, plan.cases, calls, fmt),
                          calls)

    idx = M.resample_indices(len(plan.cases), resamples=cfg.bootstrap, seed=cfg.seed)
    scores = {label: {k: M.score(s, agg, idx, confidence=cfg.confidence) for k, (s, agg) in stats.items()}
              for label, (_, stats, _) in systems.items()}
    result = {"model": plan.model, "baseline": plan.baseline, "data": str(cfg.data),
              "examples_evaluated": len(plan.cases), "settings": to_dict(cfg) | {"max_tokens": plan.max_tokens},
              "metrics": scores, "notes": plan.notes}
    if plan.baseline:
        tuned, base = systems["tuned"][1], systems["base"][1]
        result["delta"] = {k: M.score(s, agg, idx, baseline=base[k][0], confidence=cfg.confidence)
                           for k, (s, agg) in tuned.items()}
    result["examples"] = example_rows(plan.cases, systems)
    result["report_dir"] = str(write_report(result, plan.out, plan.run_dir))
    emit(Event("eval", "done", metrics={"report_dir": result["report_dir"]}))
    return result
