"""`chatforge demo`: the whole product on an embedded model, offline, in about ten minutes on a CPU.

check the bundled data -> ask the base model -> LoRA fine-tune -> eval base vs tuned -> ask the tuned model
-> DPO on the bundled preference pairs (facts the SFT data does not have: a new product, new error codes and
services) on top of the tuned run -> preference accuracy of base / SFT / DPO on held-out pairs -> export (merged safetensors + GGUF). Each step says what it does and how long it took; a failure
names the step that failed and why.

--lang en (default): SmolLM2-135M-Instruct on the Lumora Home support data (English).
--lang zh: the Gemma 3 270M *base* model (it has never been trained to chat) on the 青禾电器 support data
(Chinese), scored on characters, with the demo's targets checked at the end (tuned character F1 at least
3x the base's, stop rate >= 95%, no broken character U+FFFD in any tuned answer).
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chatforge.config import option, positive_int
from chatforge.errors import ChatforgeError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


@dataclass(frozen=True)
class Language:
    model: str  # catalog name of the base model
    train: str  # bundled files under examples/data
    heldout: str
    out: str
    questions: tuple[str, ...]  # three held-out questions whose facts are distinctive
    epochs: int = 5  # passes over the training data


LANGUAGES = {
    "en": Language("smollm2-135m-instruct", "lumora_train.jsonl", "lumora_heldout.jsonl", "runs/demo", (
        "Lumora Hub reports E14 for my thermostat. What's wrong?",
        "My son typed the wrong code a few times and now the Keystone says E42. What happened?",
        "How can I restore the Halo to its factory settings?")),
    "zh": Language("gemma3-270m", "qinghe_train.jsonl", "qinghe_heldout.jsonl", "runs/demo-zh", (
        "青禾门锁 L5 屏幕上一直跳 E10，我该怎么解决？",
        "出门回来发现青禾门锁 L5 完全没电了，我怎么进屋？",
        "我想把青禾扫地机 R7 的设置全部清空回到初始状态，应该怎么操作？"), epochs=2),
}
# The Chinese demo's targets (issue: a base model becomes a Chinese support assistant).
ZH_TARGETS = {"f1_ratio": 3.0, "stop_rate": 95.0}


@dataclass
class DemoConfig:
    lang: str = option("en", "en: SmolLM2-135M-Instruct on English support data; zh: the Gemma 3 270M base model "
                             "on Chinese support data (scored on characters).", choices=list(LANGUAGES))
    out: str | None = option(None, "Run directory of the demo's training run (reports and exports go inside; "
                                   "default: runs/demo, runs/demo-zh for --lang zh).")
    train_data: str | None = option(None, "Training data, OpenAI chat JSONL (default: the bundled "
                                          "examples/data/lumora_train.jsonl, qinghe_train.jsonl for --lang zh).")
    heldout_data: str | None = option(None, "Held-out data for eval and the questions (default: the bundled "
                                            "examples/data/lumora_heldout.jsonl, qinghe_heldout.jsonl for zh).")
    epochs: int | None = option(None, "Training epochs over the example data (default: 5; 2 for --lang zh, whose "
                                      "model is twice as large, with a 262k-word vocabulary).", parse=positive_int)
    max_steps: int | None = option(None, "Stop training after this many optimizer steps (a quick try of the demo).",
                                   parse=positive_int)
    batch_tokens: int = option(2048, "Tokens per optimizer step (small: many steps teach the facts in minutes).")
    lr: float = option(1e-3, "LoRA learning rate (high on purpose: a few minutes of training must teach the domain).")
    lora_rank: int = option(16, "LoRA rank.")
    max_eval_examples: int = option(60, "Held-out examples to evaluate (both models answer each).")
    dpo: bool = option(True, "Preference-tune the tuned run with DPO on the bundled pairs (OUT/dpo) and compare "
                             "the preference accuracy of base, SFT and DPO on held-out pairs.")
    dpo_epochs: int = option(3, "DPO epochs over the preference pairs (90 pairs: about two minutes).")
    dpo_lr: float = option(5e-4, "DPO learning rate (LoRA adapters on top of the tuned run).")
    export: bool = option(True, "Export the tuned model (merged safetensors and GGUF) at the end.")

    def __post_init__(self):
        if self.lang not in LANGUAGES:
            raise ChatforgeError(f"--lang {self.lang}: choose one of {', '.join(LANGUAGES)}")
        lang = LANGUAGES[self.lang]
        self.out = self.out or lang.out
        self.train_data = self.train_data or str(EXAMPLES / lang.train)
        self.heldout_data = self.heldout_data or str(EXAMPLES / lang.heldout)
        self.epochs = self.epochs or lang.epochs

    @property
    def model(self) -> str:
        return LANGUAGES[self.lang].model

    @property
    def questions(self) -> tuple[str, ...]:
        return LANGUAGES[self.lang].questions


PAIRS_TRAIN = EXAMPLES / "lumora_pairs_train.jsonl"
PAIRS_HELDOUT = EXAMPLES / "lumora_pairs_heldout.jsonl"
STEPS = 8

# Three held-out questions whose facts are distinctive (an error code, a reset procedure).
QUESTIONS = list(LANGUAGES["en"].questions)


def say(msg: str = "") -> None:
    print(msg, flush=True)


@contextmanager
def step(number: int, title: str):
    """Print the step, time it, and turn any failure into one message naming the step."""
    say(f"\n=== Step {number}/{STEPS}: {title}")
    t = time.perf_counter()
    try:
        yield
    except ChatforgeError as e:
        raise ChatforgeError(f"demo step {number} ({title}) failed: {e.message}", hint=e.hint,
                             exit_code=e.exit_code) from None
    except Exception as e:
        raise ChatforgeError(f"demo step {number} ({title}) failed: {type(e).__name__}: {e}", exit_code=1) from None
    say(f"--- step {number} done in {time.perf_counter() - t:.1f}s")


def _system_prompt(path: str) -> str | None:
    import json

    with open(path, encoding="utf-8") as f:
        first = json.loads(f.readline())
    return next((m["content"] for m in first["messages"] if m["role"] == "system"), None)


def ask(model: str, system: str | None, questions=QUESTIONS) -> list[str]:
    """Answers of `model` to the demo questions (greedy), in one batch."""
    from chatforge.infer import Engine, SamplingParams
    from chatforge.models.load import load_model

    engine = Engine(load_model(model))
    sys_msg = [{"role": "system", "content": system}] if system else []
    convs = [sys_msg + [{"role": "user", "content": q}] for q in questions]
    return [c.text.strip() for c in engine.chat_batch(convs, SamplingParams(max_tokens=80))]


def run_demo(cfg: DemoConfig) -> int:
    from chatforge.models.catalog import license_note
    from chatforge.models.load import set_threads

    set_threads()
    t0 = time.perf_counter()
    out = Path(cfg.out)
    model, questions = cfg.model, cfg.questions
    if license_note(model):
        say(f"{model}: its weights are provided under the {license_note(model)}; running this demo accepts them.")
    with step(1, "check the bundled example data"):
        _fresh_run_dir(out)
        system = _system_prompt(cfg.heldout_data)
        _check(cfg)
    with step(2, f"ask the base model ({model}) three held-out questions"):
        base_answers = ask(model, system, questions)
        for q, a in zip(questions, base_answers):
            say(f"Q: {q}\nbase: {a or '(empty: it ended its answer at once)'}\n")
    with step(3, f"fine-tune {model} with LoRA on the example data -> {out}"):
        _train(cfg, model)
    with step(4, "evaluate base vs tuned on the held-out set"):
        result = _evaluate(cfg)
        if cfg.lang == "zh":
            say("\n".join(targets_report(result)))
    with step(5, "ask the tuned model the same questions"):
        tuned_answers = ask(str(out), system, questions)
        for q, a, b in zip(questions, base_answers, tuned_answers):
            say(f"Q: {q}\n  base:  {a}\n  tuned: {b}\n")
    if cfg.dpo and cfg.lang == "en":  # the bundled preference pairs are the English (Lumora) ones
        with step(6, f"preference-tune the tuned run with DPO on {PAIRS_TRAIN.name} -> {out / 'dpo'}"):
            _train_dpo(cfg)
        with step(7, "preference accuracy of base, SFT and DPO on the held-out pairs"):
            _evaluate_preferences(cfg)
    if cfg.export:
        with step(8, "export the tuned model (merged safetensors and GGUF)"):
            _export(cfg)
    if cfg.lang == "zh":
        say("\n" + "\n".join(targets_report(result)))  # again, after the long output of the later steps
    say(f"\nDemo finished in {time.perf_counter() - t0:.0f}s. Next:")
    say(f"  chatforge chat {out}                 # chat with the tuned model in the terminal")
    say(f"  chatforge serve {out}                # OpenAI-compatible API + web page on http://127.0.0.1:8000")
    say(f"  open {out / 'eval' / 'report.html'}  # the evaluation report")
    return 0


def _fresh_run_dir(out: Path) -> None:
    """Each demo starts from scratch: a previous demo run at `out` is replaced; anything else there is refused."""
    import shutil

    if not out.exists():
        return
    if not (out / "run.json").is_file():
        raise ChatforgeError(f"--out {out}: exists and is not a chatforge run; choose another --out")
    say(f"replacing the previous demo run {out}")
    shutil.rmtree(out)


def _check(cfg: DemoConfig) -> None:
    from chatforge.commands.check import check_data
    from chatforge.data.config import CheckConfig

    if check_data(cfg.train_data, CheckConfig(model=cfg.model, eval_data=cfg.heldout_data)) != 0:
        raise ChatforgeError(f"{cfg.train_data}: the example data has errors (see above)")


def _train(cfg: DemoConfig, model: str) -> None:
    from chatforge.train.config import TrainConfig
    from chatforge.train.callbacks import ProgressBar
    from chatforge.train.run import train

    bar = ProgressBar()
    try:
        run_dir = train(TrainConfig(model=model, data=cfg.train_data, eval_data=cfg.heldout_data, method="lora",
                                    epochs=str(cfg.epochs), max_steps=cfg.max_steps, lr=cfg.lr,
                                    lora_rank=cfg.lora_rank, batch_tokens=cfg.batch_tokens, out=cfg.out), on_event=bar)
    finally:
        bar.close()
    _show_summary(run_dir)


def _show_summary(run_dir: Path) -> None:
    """The run's summary table, as `chatforge train` prints it (train() itself prints nothing)."""
    from chatforge.train.run import print_summary

    print_summary(run_dir, json.loads((run_dir / "run.json").read_text(encoding="utf-8")))


def _evaluate(cfg: DemoConfig) -> dict:
    from chatforge.evaluate.config import EvalConfig
    from chatforge.evaluate.report import summary_table
    from chatforge.evaluate.run import evaluate

    from chatforge.events import ConsoleView

    result = evaluate(EvalConfig(model=cfg.out, data=cfg.heldout_data, max_examples=cfg.max_eval_examples,
                                 out=str(Path(cfg.out) / "eval")), on_event=ConsoleView())
    say(summary_table(result))
    say(f"report: {result['report_dir']}/report.html")
    return result


def targets_report(result: dict) -> list[str]:
    """The Chinese demo's targets, each measured and marked ok / MISSED (lines to print)."""
    m = result["metrics"]
    tuned_f1, base_f1 = m["tuned"]["f1"]["value"] or 0.0, m["base"]["f1"]["value"] or 0.0
    ratio = tuned_f1 / base_f1 if base_f1 else float("inf")
    stop = m["tuned"]["stop_rate"]["value"] or 0.0
    broken = sum("\ufffd" in ex["tuned"]["answer"] for ex in result["examples"])

    def mark(ok: bool) -> str:
        return "ok" if ok else "MISSED"
    return ["Targets of the Chinese demo:",
            f"  character F1 tuned {tuned_f1:.1f} vs base {base_f1:.1f} = "
            f"{f'{ratio:.1f}x' if base_f1 else 'the base scores 0'} (target >= "
            f"{ZH_TARGETS['f1_ratio']:g}x): {mark(ratio >= ZH_TARGETS['f1_ratio'])}",
            f"  stop rate {stop:.1f}% (target >= {ZH_TARGETS['stop_rate']:g}%): {mark(stop >= ZH_TARGETS['stop_rate'])}",
            f"  tuned answers with U+FFFD (a broken character): {broken} (target 0): {mark(broken == 0)}"]


def _train_dpo(cfg: DemoConfig) -> None:
    from chatforge.train.config import TrainConfig
    from chatforge.train.run import train

    run_dir = train(TrainConfig(model=cfg.out, data=str(PAIRS_TRAIN), eval_data=str(PAIRS_HELDOUT), method="dpo",
                                epochs=str(cfg.dpo_epochs), lr=cfg.dpo_lr, lora_rank=cfg.lora_rank,
                                batch_tokens=cfg.batch_tokens, eval_every=10**6,
                                out=str(Path(cfg.out) / "dpo")))  # evaluated once, at the end
    _show_summary(run_dir)


def _evaluate_preferences(cfg: DemoConfig) -> None:
    """DPO vs SFT and SFT vs base on the held-out pairs: each comparison paired, with its bootstrap interval."""
    from chatforge.evaluate.config import EvalConfig
    from chatforge.evaluate.run import evaluate

    out = Path(cfg.out)
    dpo = evaluate(EvalConfig(model=str(out / "dpo"), data=str(PAIRS_HELDOUT), out=str(out / "dpo" / "eval")))
    sft = evaluate(EvalConfig(model=str(out), data=str(PAIRS_HELDOUT), out=str(out / "eval-preference")))
    say(preference_summary(sft, dpo))
    say(f"reports: {dpo['report_dir']}/report.md, {sft['report_dir']}/report.md")


def preference_summary(sft: dict, dpo: dict) -> str:
    """Accuracy of base, SFT and DPO, and each step's gain with its confidence interval."""
    def acc(result, label):
        return result["metrics"][label]["preference_accuracy"]

    def gain(result):
        d = result["delta"]["preference_accuracy"]
        return f"{d['value']:+.1f} points [95% CI {d['ci'][0]:+.1f}, {d['ci'][1]:+.1f}]"

    n = dpo["examples_evaluated"]
    return "\n".join([
        f"preference accuracy on {n} held-out pairs (chosen answer more likely per token than the wrong one):",
        f"  base  {acc(sft, 'base')['value']:.1f}%",
        f"  SFT   {acc(sft, 'tuned')['value']:.1f}%   SFT - base: {gain(sft)}",
        f"  DPO   {acc(dpo, 'tuned')['value']:.1f}%   DPO - SFT:  {gain(dpo)}"])


def _export(cfg: DemoConfig) -> None:
    from chatforge.export.config import ExportConfig
    from chatforge.export.run import export

    out = Path(cfg.out) / "export"
    for sub, fmt, quant in (("hf", "hf", None), ("gguf", "gguf", "q8_0")):
        written = export(ExportConfig(model=cfg.out, format=fmt, quant=quant, out=str(out / sub), ollama=fmt == "gguf",
                                      force=True), on_event=lambda e: say(e.message) if e.phase == "message" else None)
        say(f"wrote {written}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo(DemoConfig()))
