"""Answer-quality metrics, computed per example and aggregated with bootstrap confidence intervals.

Every metric is a pair (per-example statistics, aggregate):

    stats      (N, K) array, one row per example (e.g. BLEU's n-gram match counts, or [value, 1] for a mean)
    aggregate  summed stats (K,) -> score

so the corpus score is `aggregate(stats.sum(0))` and a bootstrap resample is `aggregate(stats[idx].sum(0))`.
This handles mean metrics (F1, ROUGE) and corpus metrics (BLEU, chrF, perplexity) with one code path, and
a paired bootstrap of the difference between two systems resamples the same examples for both.

CJK text (Chinese, Japanese, Korean) has no spaces between words, so it is scored on characters:
BLEU uses sacrebleu's "zh" tokenizer for every example whose reference contains CJK characters (per example,
so a mixed English/Chinese set gets both right; "zh" splits CJK characters and tokenizes the rest like "13a"),
ROUGE and F1/EM count each CJK character as one token. Scores are percentages (0-100).
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from functools import lru_cache
from typing import Callable

import numpy as np

# Kana, Han (incl. extension A and compatibility ideographs), Hangul: the scripts written without spaces.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_RE = re.compile(f"[{_CJK}]")
_CJK_SPLIT = re.compile(f"([{_CJK}])")
_WORD_OR_CJK = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")  # ROUGE tokens: one CJK char, or a letter/digit run
_ARTICLES = re.compile(r"\b(a|an|the)\b")

Aggregate = Callable[[np.ndarray], float]


def has_cjk(text: str) -> bool:
    return _CJK_RE.search(text) is not None


def split_cjk(text: str) -> list[str]:
    """Whitespace tokens, with every CJK character a token of its own."""
    return [t for piece in _CJK_SPLIT.split(text) for t in piece.split()]


# ---- SQuAD-style token F1 and exact match -------------------------------------------------------------------
def _is_punct(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation (ASCII and Unicode, e.g. ，。？), drop the articles
    a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if not _is_punct(ch))
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> list[str]:
    return split_cjk(normalize_answer(text))


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall (bag of normalised tokens), in [0, 1]."""
    pred, ref = answer_tokens(prediction), answer_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, reference: str) -> float:
    return float(answer_tokens(prediction) == answer_tokens(reference))


# ---- ROUGE (rouge-score) with CJK characters as tokens ------------------------------------------------------
class RougeTokenizer:
    """rouge-score's default tokenizer keeps only [a-z0-9] (it deletes Chinese entirely); this one lowercases
    and keeps letter/digit runs of any script, with each CJK character its own token."""

    def tokenize(self, text: str) -> list[str]:
        return _WORD_OR_CJK.findall(text.lower())


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=RougeTokenizer())


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F-measures in [0, 1]."""
    scores = _rouge_scorer().score(reference, prediction)
    return {name: s.fmeasure for name, s in scores.items()}


# ---- BLEU and chrF (sacrebleu) as sufficient statistics ----------------------------------------------------
@lru_cache(maxsize=4)
def _bleu(tokenize: str):
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize=tokenize)


@lru_cache(maxsize=1)
def _chrf():
    from sacrebleu.metrics import CHRF

    return CHRF()


def bleu_tokenizer(reference: str) -> str:
    return "zh" if has_cjk(reference) else "13a"


def bleu_stats(predictions: list[str], references: list[str]) -> np.ndarray:
    """(N, 2 + 2*4) sacrebleu statistics [hyp_len, ref_len, matches 1-4, totals 1-4], tokenized per example."""
    rows = [_bleu(bleu_tokenizer(r))._extract_corpus_statistics([p], [[r]])[0]
            for p, r in zip(predictions, references)]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)


def bleu_score(summed: np.ndarray) -> float:
    """Corpus BLEU (0-100, sacrebleu's default exp smoothing) from summed statistics."""
    return float(_bleu("13a")._compute_score_from_stats(list(summed)).score)


def chrf_stats(predictions: list[str], references: list[str]) -> np.ndarray:
    """(N, K) sacrebleu chrF statistics (character n-grams: language independent, so CJK needs nothing)."""
    rows = _chrf()._extract_corpus_statistics(predictions, [references])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)


def chrf_score(summed: np.ndarray) -> float:
    return float(_chrf()._compute_score_from_stats(list(summed)).score)


# ---- aggregates of [numerator, denominator] statistics ----------------------------------------------------
def ratio(scale: float = 1.0) -> Aggregate:
    """sum(numerators) / sum(denominators) * scale: a mean when denominators are 1, micro-average otherwise."""
    return lambda s: float(s[0] / s[1] * scale) if s[1] else math.nan


def perplexity(s: np.ndarray) -> float:
    """exp(total negative log-likelihood / total answer tokens) from [nll_sum, n_tokens]."""
    return float(math.exp(s[0] / s[1])) if s[1] else math.nan


def as_mean(values) -> np.ndarray:
    """Per-example values -> (N, 2) [value, 1] statistics for `ratio`."""
    values = np.asarray(values, dtype=np.float64)
    return np.stack([values, np.ones_like(values)], axis=1)


def text_metrics(predictions: list[str], references: list[str]) -> dict[str, tuple[np.ndarray, Aggregate]]:
    """Every reference-based metric of one system: name -> (per-example stats, aggregate)."""
    rouges = [rouge(p, r) for p, r in zip(predictions, references)]
    pct = ratio(100.0)
    return {
        "f1": (as_mean([token_f1(p, r) for p, r in zip(predictions, references)]), pct),
        "exact_match": (as_mean([exact_match(p, r) for p, r in zip(predictions, references)]), pct),
        "rouge1": (as_mean([x["rouge1"] for x in rouges]), pct),
        "rouge2": (as_mean([x["rouge2"] for x in rouges]), pct),
        "rougeL": (as_mean([x["rougeL"] for x in rouges]), pct),
        "bleu": (bleu_stats(predictions, references), bleu_score),
        "chrf": (chrf_stats(predictions, references), chrf_score),
    }


# ---- bootstrap ---------------------------------------------------------------------------------------------
def resample_indices(n: int, *, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """(resamples, n) example indices drawn with replacement; share them to pair two systems."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_ci(stats: np.ndarray, aggregate: Aggregate, indices: np.ndarray, *,
                 baseline: np.ndarray | None = None, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of aggregate(stats) — or, with `baseline` (same examples, same order),
    of the paired difference aggregate(stats) - aggregate(baseline) over the same resampled examples."""
    scores = np.array([aggregate(row) for row in stats[indices].sum(1)])  # (resamples, n, K) -> (resamples,)
    if baseline is not None:
        scores -= np.array([aggregate(row) for row in baseline[indices].sum(1)])
    scores = scores[~np.isnan(scores)]
    if scores.size == 0:
        return math.nan, math.nan
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(scores, [tail, 100 - tail])
    return float(lo), float(hi)


def score(stats: np.ndarray, aggregate: Aggregate, indices: np.ndarray, *, baseline: np.ndarray | None = None,
          confidence: float = 0.95) -> dict:
    """{"value", "ci": [lo, hi]} for one system, or for the difference with `baseline`."""
    value = aggregate(stats.sum(0)) - (aggregate(baseline.sum(0)) if baseline is not None else 0.0)
    lo, hi = bootstrap_ci(stats, aggregate, indices, baseline=baseline, confidence=confidence)
    return {"value": json_number(value), "ci": [json_number(lo), json_number(hi)]}


def json_number(x: float) -> float | None:
    """JSON has no NaN: undefined scores (no answer tokens at all) become null."""
    return None if x is None or math.isnan(x) else round(float(x), 4)
