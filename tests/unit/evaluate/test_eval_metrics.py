"""Each metric against hand-computed values (English and Chinese), and the bootstrap intervals."""

import math

import numpy as np
import pytest

from chatforge.evaluate import metrics as M


# ---- normalisation and tokens ------------------------------------------------------------------------------
def test_normalize_answer_is_squad_style():
    assert M.normalize_answer("The  Quick, brown-fox;\tAN apple!") == "quick brownfox apple"
    assert M.normalize_answer("Theatre a la carte") == "theatre la carte"  # articles only as whole words
    assert M.normalize_answer("所有产品，都可以退货。") == "所有产品都可以退货"  # Unicode punctuation too


def test_answer_tokens_split_cjk_into_characters():
    assert M.answer_tokens("所有 Lumora 产品，45 天。") == ["所", "有", "lumora", "产", "品", "45", "天"]
    assert M.answer_tokens("It supports 2.4 GHz Wi-Fi.") == ["it", "supports", "24", "ghz", "wifi"]


def test_has_cjk():
    assert M.has_cjk("退货") and M.has_cjk("Lumora 产品") and M.has_cjk("ラーメン") and M.has_cjk("한국어")
    assert not M.has_cjk("Wi-Fi, café, 45 days")


# ---- F1 and exact match ------------------------------------------------------------------------------------
def test_token_f1_hand_computed():
    assert M.token_f1("The cat sat on the mat.", "A cat sat on a mat!") == 1.0
    # pred [cat, dog], ref [cat, cat, fish]: 1 shared -> P 1/2, R 1/3 -> F1 0.4
    assert M.token_f1("cat dog", "cat cat fish") == pytest.approx(0.4)
    assert M.token_f1("dog", "cat") == 0.0
    assert M.token_f1("", "") == 1.0 and M.token_f1("the", "cat") == 0.0  # empty after normalisation


def test_token_f1_chinese_on_characters():
    # 6 predicted characters all in the 7-character reference: P 1, R 6/7 -> F1 12/13
    assert M.token_f1("猫坐在垫子上", "猫坐在垫子上了") == pytest.approx(12 / 13)
    assert M.token_f1("狗", "猫") == 0.0


def test_exact_match():
    assert M.exact_match("The Halo connects to 2.4 GHz.", "halo connects to 2.4 ghz") == 1.0
    assert M.exact_match("所有产品。", "所有 产品") == 1.0  # spaces between CJK characters do not matter
    assert M.exact_match("cat sat", "cat sat down") == 0.0


# ---- ROUGE -------------------------------------------------------------------------------------------------
def test_rouge_english_hand_computed():
    r = M.rouge("the cat sat", "a cat sat down")
    # unigrams: 2 shared of 3 predicted / 4 reference -> F = 2 * (2/3 * 1/2) / (2/3 + 1/2) = 4/7
    assert r["rouge1"] == pytest.approx(4 / 7)
    # bigrams: [the cat, cat sat] vs [a cat, cat sat, sat down] -> P 1/2, R 1/3 -> F 0.4
    assert r["rouge2"] == pytest.approx(0.4)
    assert r["rougeL"] == pytest.approx(4 / 7)  # LCS "cat sat"


def test_rouge_chinese_on_characters():
    r = M.rouge("猫坐在垫子上", "猫在垫子上坐")
    assert r["rouge1"] == pytest.approx(1.0)  # the same six characters
    assert r["rouge2"] == pytest.approx(0.6)  # 3 of 5 character bigrams (在垫, 垫子, 子上)
    assert r["rougeL"] == pytest.approx(5 / 6)  # LCS 猫在垫子上
    # why the custom tokenizer: rouge-score's default one deletes every Chinese character
    from rouge_score.rouge_scorer import RougeScorer

    assert RougeScorer(["rouge1"]).score("猫在垫子上坐", "猫坐在垫子上")["rouge1"].fmeasure == 0.0


# ---- BLEU and chrF -----------------------------------------------------------------------------------------
def test_bleu_hand_computed():
    s = M.bleu_stats(["the cat sat on mat"], ["the cat sat on the mat"])
    # precisions 5/5, 3/4, 2/3, 1/2; brevity penalty exp(1 - 6/5)
    expected = 100 * math.exp(1 - 6 / 5) * (1 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    assert M.bleu_score(s.sum(0)) == pytest.approx(expected, abs=1e-6)
    same = M.bleu_stats(["the same five words here"], ["the same five words here"])
    assert M.bleu_score(same.sum(0)) == pytest.approx(100)
    # BLEU needs 4-grams: a three-word exact answer scores 0 on its own (corpus BLEU sums over examples)
    assert M.bleu_score(M.bleu_stats(["three words here"], ["three words here"]).sum(0)) == 0.0


def test_bleu_chinese_uses_zh_tokenisation():
    s = M.bleu_stats(["猫坐在垫子上"], ["猫坐在垫子上了"])
    # characters: 6 vs 7, every n-gram of the hypothesis matches -> BLEU = brevity penalty exp(1 - 7/6)
    assert M.bleu_score(s.sum(0)) == pytest.approx(100 * math.exp(1 - 7 / 6), abs=1e-6)
    assert M.bleu_tokenizer("猫坐在垫子上了") == "zh" and M.bleu_tokenizer("the mat") == "13a"


def test_corpus_bleu_and_chrf_match_sacrebleu_on_english():
    import sacrebleu

    hyps = ["the cat sat on mat", "a dog barks", "it is closed on Sundays."]
    refs = ["the cat sat on the mat", "the dog barks loudly", "It is closed on Sundays."]
    assert M.bleu_score(M.bleu_stats(hyps, refs).sum(0)) == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert M.chrf_score(M.chrf_stats(hyps, refs).sum(0)) == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)


def test_chrf_bounds_and_chinese():
    assert M.chrf_score(M.chrf_stats(["所有产品"], ["所有产品"]).sum(0)) == pytest.approx(100)
    assert M.chrf_score(M.chrf_stats(["xyz"], ["abc"]).sum(0)) == 0.0
    partial = M.chrf_score(M.chrf_stats(["猫坐在垫子上"], ["猫坐在垫子上了"]).sum(0))
    assert 50 < partial < 100


def test_text_metrics_percentages():
    m = M.text_metrics(["cat dog", "猫坐在垫子上"], ["cat cat fish", "猫坐在垫子上了"])
    stats, agg = m["f1"]
    assert agg(stats.sum(0)) == pytest.approx(100 * (0.4 + 12 / 13) / 2)
    assert set(m) == {"f1", "exact_match", "rouge1", "rouge2", "rougeL", "bleu", "chrf"}


def test_ratio_and_perplexity_aggregates():
    # two examples: nll 2.0 over 4 tokens, 1.0 over 1 token -> exp(3/5)
    assert M.perplexity(np.array([[2.0, 4], [1.0, 1]]).sum(0)) == pytest.approx(math.exp(3 / 5))
    assert M.ratio(100)(np.array([3.0, 4.0])) == 75.0
    assert math.isnan(M.ratio()(np.array([0.0, 0.0]))) and math.isnan(M.perplexity(np.array([0.0, 0.0])))


# ---- bootstrap ---------------------------------------------------------------------------------------------
def _ci(values, seed=0, resamples=1000):
    stats = M.as_mean(values)
    return M.bootstrap_ci(stats, M.ratio(), M.resample_indices(len(values), resamples=resamples, seed=seed))


def test_bootstrap_ci_contains_point_estimate_and_is_seeded():
    values = np.random.default_rng(1).uniform(0, 1, 50)
    lo, hi = _ci(values)
    assert lo < values.mean() < hi
    assert _ci(values) == (lo, hi)  # same seed, same interval
    assert _ci(values, seed=2) != (lo, hi)


def test_bootstrap_ci_narrows_with_more_data():
    rng = np.random.default_rng(3)
    lo_small, hi_small = _ci(rng.uniform(0, 1, 20))
    lo_big, hi_big = _ci(rng.uniform(0, 1, 800))
    assert hi_big - lo_big < (hi_small - lo_small) / 3  # about 1/sqrt(40) as wide


def test_paired_delta_ci_excludes_zero_for_a_clear_gain():
    rng = np.random.default_rng(4)
    base = rng.uniform(0, 0.5, 50)
    tuned = np.clip(base + rng.normal(0.15, 0.1, 50), 0, 1)
    idx = M.resample_indices(50, seed=0)
    s = M.score(M.as_mean(tuned), M.ratio(100), idx, baseline=M.as_mean(base))
    assert s["value"] == pytest.approx(100 * (tuned.mean() - base.mean()), abs=1e-3)
    assert s["ci"][0] > 0 and s["ci"][0] < s["value"] < s["ci"][1]


def test_paired_delta_ci_includes_zero_for_identical_or_noisy_systems():
    rng = np.random.default_rng(5)
    base = rng.uniform(0, 1, 50)
    idx = M.resample_indices(50, seed=0)
    same = M.score(M.as_mean(base), M.ratio(100), idx, baseline=M.as_mean(base))
    assert same == {"value": 0.0, "ci": [0.0, 0.0]}
    noise = M.score(M.as_mean(rng.permutation(base)), M.ratio(100), idx, baseline=M.as_mean(base))
    assert noise["ci"][0] < 0 < noise["ci"][1]


def test_bootstrap_of_corpus_bleu_resamples_statistics():
    hyps = ["the cat sat on mat", "a dog barks", "猫坐在垫子上", "it is closed"] * 5
    refs = ["the cat sat on the mat", "the dog barks loudly", "猫坐在垫子上了", "it is closed on sundays"] * 5
    stats = M.bleu_stats(hyps, refs)
    s = M.score(stats, M.bleu_score, M.resample_indices(len(hyps), resamples=200, seed=0))
    assert s["ci"][0] <= s["value"] <= s["ci"][1] and s["ci"][0] < s["ci"][1]
