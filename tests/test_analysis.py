"""The eval estimators on hand-made pools with known answers: pass@k, maj@k, weighted@k, best@k,
FLOPs at k, intervals, interpolation at equal FLOPs, exchange, total compute and allocation."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from ttcl.runtime.analysis.allocate import allocate, choose, keeping_table, probe_bins, split_halves
from ttcl.runtime.analysis.compare import acc_at, exchange, flops_to_reach, total_compute
from ttcl.runtime.analysis.curves import ItemTable, curve_rows
from ttcl.runtime.analysis.intervals import bootstrap_mean, paired_diff, wilson
from ttcl.runtime.analysis.pool import (
    Pool,
    best_at_k,
    default_ks,
    estimate,
    estimate_keeping,
    flops_at_k,
    flops_keeping,
    pass_at_k,
    pass_flops,
    signals_of,
    vote_at_k,
)


def brute(answers, correct, k, rule, scores=None):  # type: ignore[no-untyped-def]
    """Mean over every k-subset, written independently of the estimators."""
    right = {a for a, ok in zip(answers, correct, strict=True) if ok}
    vals = []
    for sub in itertools.combinations(range(len(answers)), k):
        if rule == "pass":
            vals.append(float(any(correct[i] for i in sub)))
        elif rule == "best":
            got = [i for i in sub if answers[i] is not None]
            if not got:
                vals.append(0.0)
                continue
            top = max(scores[i] for i in got)
            tied = [i for i in got if scores[i] == top]
            vals.append(sum(answers[i] in right for i in tied) / len(tied))
        else:
            tally: Counter[str] = Counter()
            for i in sub:
                if answers[i] is not None:
                    tally[answers[i]] += 1.0 if rule == "maj" else scores[i]
            if not tally:
                vals.append(0.0)
                continue
            top = max(tally.values())
            win = [a for a, w in tally.items() if w == top]
            vals.append(sum(a in right for a in win) / len(win))
    return sum(vals) / len(vals)


POOL = Pool(
    answers=["7", "7", "9", None, "9", "3"],
    correct=[True, True, False, False, False, False],
    gen_flops=[10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
    shared_flops=100.0,
    scores={"orm": [0.9, 0.2, 0.8, 0.99, 0.8, 0.1]},
    verifier_flops={"orm": 600.0},
    strict=[True, False, False, False, False, False],
)


def test_pass_at_k_is_chens_closed_form_and_matches_enumeration() -> None:
    assert pass_at_k(6, 2, 1) == pytest.approx(2 / 6)
    assert pass_at_k(6, 2, 2) == pytest.approx(1 - math.comb(4, 2) / math.comb(6, 2))  # 0.6
    assert pass_at_k(6, 2, 5) == 1.0 and pass_at_k(6, 0, 3) == 0.0
    for k in range(1, 7):
        assert estimate(POOL, "pass", k) == pytest.approx(brute(POOL.answers, POOL.correct, k, "pass"))
        assert estimate(POOL, "strict", k) == pytest.approx(brute(POOL.answers, POOL.strict, k, "pass"))
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


@pytest.mark.parametrize("k", range(1, 7))
def test_maj_weighted_and_best_at_k_match_enumeration_of_every_subset(k: int) -> None:
    a, c, s = POOL.answers, POOL.correct, POOL.scores["orm"]
    assert estimate(POOL, "maj", k) == pytest.approx(brute(a, c, k, "maj"))
    assert estimate(POOL, "orm_w", k) == pytest.approx(brute(a, c, k, "weighted", s))
    assert estimate(POOL, "orm_best", k) == pytest.approx(brute(a, c, k, "best", s))


def test_hand_computed_values() -> None:
    # maj@3 of [1, 1, 2, 3, None] with 1 right: 3 subsets hold both 1s (win), each 1 alone
    # ties with {2,3} (1/3), {2,None} (1/2), {3,None} (1/2): (3 + 2 * 4/3) / 10.
    assert vote_at_k(["1", "1", "2", "3", None], [True, True, False, False, False], 3) == pytest.approx(17 / 30)
    # best@2: the drawn top answered score decides; hand count 4/10.
    assert best_at_k([0.9, 0.1, 0.5, 0.95, 0.99], ["1", "1", "2", "3", None],
                     [True, True, False, False, False], 2) == pytest.approx(0.4)
    assert vote_at_k(["5"] * 4, [True] * 4, 2) == 1.0 and vote_at_k(["5", None], [False, False], 1) == 0.0


def test_large_pools_use_a_seeded_monte_carlo_close_to_the_exact_value() -> None:
    rng = np.random.default_rng(3)
    answers = [str(x) for x in rng.integers(0, 4, size=16)]
    correct = [a == "0" for a in answers]
    got = vote_at_k(answers, correct, 8, seed=5)  # C(16, 8) = 12870 > ENUMERATE
    assert got == vote_at_k(answers, correct, 8, seed=5)
    assert got == pytest.approx(brute(answers, correct, 8, "maj"), abs=0.03)


def test_flops_at_k_counts_the_shared_prefill_once() -> None:
    mean_gen = sum(POOL.gen_flops) / 6
    assert flops_at_k(POOL, "maj", 1) == pytest.approx(100 + mean_gen)
    assert flops_at_k(POOL, "maj", 4) == pytest.approx(100 + 4 * mean_gen)
    assert flops_at_k(POOL, "orm_w", 3) == pytest.approx(100 + 3 * mean_gen + 3 * 100.0)
    assert flops_at_k(POOL, "pass", 6) == pytest.approx(100 + sum(POOL.gen_flops))
    # the expectation over the actual draws of 3 candidates agrees
    draws = [100 + sum(POOL.gen_flops[i] for i in sub) for sub in itertools.combinations(range(6), 3)]
    assert flops_at_k(POOL, "maj", 3) == pytest.approx(sum(draws) / len(draws))
    assert signals_of(POOL) == ["pass", "strict", "maj", "orm_w", "orm_best"]
    assert default_ks(16) == [1, 2, 4, 8, 16] and default_ks(6) == [1, 2, 4, 6]


def test_intervals() -> None:
    lo, hi = wilson(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)  # Wilson 1927, z = 1.96
    assert wilson(0, 20)[0] == 0.0 and wilson(20, 20)[1] == 1.0
    v = np.r_[np.ones(60), np.zeros(40)]
    lo, hi = bootstrap_mean(v)
    assert lo < 0.6 < hi and hi - lo == pytest.approx(2 * 1.96 * math.sqrt(0.24 / 100), rel=0.15)
    d = paired_diff(np.r_[np.ones(30), np.zeros(70)], np.zeros(100))
    assert d["diff"] == pytest.approx(0.3) and 0.2 < d["lo"] < 0.3 < d["hi"] < 0.4
    same = paired_diff(v, v)
    assert same["lo"] == same["hi"] == 0.0


def test_interpolation_at_equal_flops_and_exchange() -> None:
    flops, acc = [1e6, 1e7, 1e8], [0.2, 0.5, 0.8]
    assert acc_at(flops, acc, 1e7) == pytest.approx(0.5)
    assert acc_at(flops, acc, math.sqrt(1e6 * 1e7)) == pytest.approx(0.35)  # halfway in log FLOPs
    assert math.isnan(acc_at(flops, acc, 1e9))
    assert flops_to_reach(flops, acc, 0.35) == pytest.approx(math.sqrt(1e13))
    assert flops_to_reach(flops, acc, 0.1) == 1e6 and flops_to_reach(flops, acc, 0.9) == math.inf
    n = 50
    a_acc = [np.full(n, 0.2), np.full(n, 0.5), np.full(n, 0.8)]
    a_fl = [np.full(n, f) for f in flops]
    e = exchange(a_acc, a_fl, np.full(n, 0.5), np.full(n, 2e7), reps=50)
    assert e["flops_to_reach"] == pytest.approx(1e7) and e["ratio"] == pytest.approx(0.5)
    assert e["ratio_lo"] == pytest.approx(0.5) and e["reached_share"] == 1.0
    assert not e["reference_zero"]


def test_exchange_is_undefined_against_a_reference_that_gets_nothing_right() -> None:
    """Any curve "reaches" 0% at its cheapest point: that is no exchange rate, so none is reported."""
    n = 40
    a_acc = [np.zeros(n), np.r_[np.ones(10), np.zeros(n - 10)]]
    a_fl = [np.full(n, 1e6), np.full(n, 4e6)]
    e = exchange(a_acc, a_fl, np.zeros(n), np.full(n, 2e7), reps=50)
    assert e["reference_zero"] and e["target_accuracy"] == 0.0
    assert math.isnan(e["ratio"]) and math.isnan(e["flops_to_reach"])
    assert math.isnan(e["ratio_lo"]) and math.isnan(e["ratio_hi"])
    # one right item in the reference: resamples that drop it are left out
    b = np.r_[1.0, np.zeros(n - 1)]
    e = exchange(a_acc, a_fl, b, np.full(n, 2e7), reps=200)
    assert not e["reference_zero"] and e["ratio"] == pytest.approx(1e6 * 4**0.1 / 2e7)  # 2.5% is a tenth of the way, in log FLOPs
    assert 0 < e["ratio_lo"] <= e["ratio"] <= e["ratio_hi"] <= 0.2 and e["reached_share"] == 1.0


def test_total_compute_follows_snells_accounting() -> None:
    rows = total_compute(([1e6, 1e8], [0.3, 0.9]), 1e12, (1e7, 0.6), 1e13, 1e9, 100.0, ratios=(1.0,))
    q = 1.0 * 1e9 / 100.0  # queries served
    assert rows[0]["queries"] == q
    assert rows[0]["a_budget_flops"] == pytest.approx((1e13 - 1e12) / q + 1e7)
    assert rows[0]["b_total_per_query"] == pytest.approx(1e13 / q + 1e7)
    assert rows[0]["a_accuracy"] == pytest.approx(acc_at([1e6, 1e8], [0.3, 0.9], rows[0]["a_budget_flops"]))


def _table(n: int) -> tuple[ItemTable, np.ndarray]:
    """Easy items (bin 0) are solved by maj@1; hard ones (bin 1) only by maj@4, which costs 4x."""
    bins = np.array([i % 2 for i in range(n)])
    t = ItemTable("m", [{"steps": int(b) + 1} for b in bins], 1, [1, 4])
    t.acc[("maj", 1)] = np.where(bins == 0, 1.0, 0.0)
    t.acc[("maj", 4)] = np.ones(n)
    t.flops[("maj", 1)] = np.full(n, 10.0)
    t.flops[("maj", 4)] = np.full(n, 40.0)
    t.acc[("pass", 4)] = np.ones(n)  # an oracle: never chosen
    t.flops[("pass", 4)] = np.full(n, 1.0)
    return t, bins


def test_allocation_spends_where_it_pays_and_is_chosen_on_the_other_half() -> None:
    t, bins = _table(40)
    select = split_halves(40, 0)
    assert select.sum() == 20
    assert choose(t, bins, select, 25.0, np.zeros(40)) == {0: ("maj", 1), 1: ("maj", 4)}
    out = allocate(t, bins, select, baseline="maj", points=8, reps=100)
    # uniform maj@4 costs 40 per item; the policy reaches its accuracy (1.0) paying 10 on easy items
    # and 40 on hard ones, measured on the report half
    report = ~select
    need = float(np.where(bins[report] == 0, 10.0, 40.0).mean())
    assert out["baseline"]["accuracy"] == 1.0 and out["baseline"]["flops"] == 40.0
    assert out["policy_flops_to_match"] == pytest.approx(need)
    assert out["saving"] == pytest.approx(40.0 / need)
    rows = curve_rows(t, "steps")
    assert {r["bin"] for r in rows} == {1, 2, "all"}


def test_a_saving_whose_resamples_do_not_all_reach_the_baseline_has_no_lower_end() -> None:
    """A resample in which the policy never reaches the baseline's accuracy has no saving; its ratio (0) made the
    interval's lower end 0.00x. That end is now undefined (NaN), with the share of such resamples."""
    from ttcl.commands.eval_cells import _saving_ci

    n = 40
    t, bins = _table(n)
    select = split_halves(n, 0)
    ref, _ = _table(n)
    # on the report half the policy's best is right on one item more than the baseline (maj@4 of the reference),
    # but on other items: the point estimate reaches it, many paired resamples do not
    report = np.flatnonzero(~select)
    half = report.size // 2
    ref.acc[("maj", 4)] = np.zeros(n)
    ref.acc[("maj", 4)][report[:half]] = 1.0
    t.acc[("maj", 4)] = np.ones(n)
    t.acc[("maj", 4)][report[: half - 1]] = 0.0
    t.acc[("maj", 1)] = np.zeros(n)
    out = allocate(t, bins, select, baseline="maj", points=8, reps=200, reference=ref)
    assert math.isfinite(out["policy_flops_to_match"]) and out["saving"] > 0
    assert math.isnan(out["saving_lo"]) and 0.2 < out["saving_unreached"] < 0.8
    shown = _saving_ci(out)
    assert shown.startswith("n/a, ") and "of the resamples the policy does not reach the baseline" in shown
    assert "0.00" not in shown
    good = allocate(*_table(n), select, baseline="maj", points=8, reps=100)  # reached in every resample
    assert out["saving_unreached"] > 0 and good["saving_unreached"] == 0.0 and math.isfinite(good["saving_lo"])
    assert _saving_ci(good) == f"{good['saving_lo']:.2f}, {good['saving_hi']:.2f}"


def test_no_saving_is_read_against_a_baseline_that_gets_nothing_right() -> None:
    """Any curve "reaches" 0% at its cheapest point (QA pass: a 3.18x saving [3.14, 3.21] was printed for
    matching a baseline that got no item right)."""
    n = 40
    t, bins = _table(n)
    select = split_halves(n, 0)
    t.acc[("maj", 4)] = np.zeros(n)
    out = allocate(t, bins, select, baseline="maj", points=8, reps=100)
    assert out["baseline"]["accuracy"] == 0.0
    assert math.isnan(out["saving"]) and math.isnan(out["saving_lo"]) and math.isnan(out["saving_hi"])


def test_each_budget_is_compared_with_the_best_uniform_configuration() -> None:
    """Snell et al.'s view: at each budget, the FLOPs the best one-configuration-for-all policy needs to
    reach the allocated policy's accuracy on the report half, over the policy's own FLOPs."""
    t, bins = _table(40)
    select = split_halves(40, 0)
    report = ~select
    out = allocate(t, bins, select, baseline="maj", points=8, reps=100)
    by_choice = {tuple(sorted(r["choice"].items())): r for r in out["curve"]}
    cheap = by_choice[(("0", "maj@1"), ("1", "maj@1"))]
    assert cheap["uniform_flops"] == pytest.approx(10.0) and cheap["vs_uniform"] == pytest.approx(1.0)
    # a row that is a uniform configuration reaches it in every resample, whatever the float rounding
    assert cheap["vs_uniform_lo"] == pytest.approx(1.0) and cheap["vs_uniform_hi"] == pytest.approx(1.0)
    split = by_choice[(("0", "maj@1"), ("1", "maj@4"))]
    need = float(np.where(bins[report] == 0, 10.0, 40.0).mean())
    # uniform maj@4 (40 per item) is the only uniform way to 100%: the split saves 40 / need, on every resample
    assert split["uniform_flops"] == pytest.approx(40.0) and split["vs_uniform"] == pytest.approx(40.0 / need)
    assert split["vs_uniform_lo"] <= split["vs_uniform"] <= split["vs_uniform_hi"]
    assert split["uniform_max_flops"] == pytest.approx(40.0)


def test_allocation_does_not_depend_on_item_order() -> None:
    t, bins = _table(40)
    select = split_halves(40, 0)
    perm = np.random.default_rng(1).permutation(40)
    tp = ItemTable("m", [t.fields[i] for i in perm], 1, t.ks,
                   acc={k: v[perm] for k, v in t.acc.items()}, flops={k: v[perm] for k, v in t.flops.items()})
    a = allocate(t, bins, select, baseline="maj", points=8, reps=50)
    b = allocate(tp, bins[perm], select[perm], baseline="maj", points=8, reps=50)
    assert [r["choice"] for r in a["curve"]] == [r["choice"] for r in b["curve"]]
    assert a["policy_flops_to_match"] == pytest.approx(b["policy_flops_to_match"])


def test_probe_bins_charge_the_probe_and_rank_by_agreement() -> None:
    easy = Pool(["4"] * 4, [True] * 4, [5.0] * 4, shared_flops=1.0)
    hard = Pool(["1", "2", "3", "4"], [False, False, False, True], [5.0] * 4, shared_flops=1.0)
    bins, cost = probe_bins([easy, hard] * 4, 2, np.array([True, False] * 4), n_bins=2)
    assert list(cost) == [10.0] * 8  # the 2 probe decodes; the prefill is the configuration's (paid once)
    assert bins[0] < bins[1]  # 0 = easiest


def test_probe_bins_by_a_verifier_rank_by_mean_score_and_charge_its_passes() -> None:
    """Snell et al.'s predicted difficulty: the mean verifier score of the first M samples (a missing
    score counts 0); the probe pays its M decodes and M of the pool's verifier passes."""
    def pool(scores: list[float]) -> Pool:
        return Pool(["1", "2", "3", "4"], [True] * 4, [5.0] * 4, shared_flops=1.0,
                    scores={"v": scores}, verifier_flops={"v": 40.0})

    sure, unsure, blank = pool([0.9, 0.8, 0.0, 0.0]), pool([0.3, 0.1, 1.0, 1.0]), pool([math.nan, 0.1, 1.0, 1.0])
    bins, cost = probe_bins([sure, unsure, blank] * 4, 2, np.array([True] * 12), n_bins=3, verifier="v")
    assert list(cost) == [2 * 5.0 + 2 * 10.0] * 12  # 2 decodes + 2 of 4 passes (40 FLOPs per pool); no second prefill
    assert bins[0] < bins[1] < bins[2]  # 0.85 (easiest), 0.2, 0.05: only the first two samples count
    # the agreement probe on the same pools ignores the scores: every answer differs, one bin
    same, _ = probe_bins([sure, unsure, blank] * 4, 2, np.array([True] * 12), n_bins=3)
    assert len(set(same)) == 1


def brute_keeping(pool: Pool, signal: str, k: int, first: int) -> float:
    """The rule on every draw of k that holds the first `first` candidates, written independently."""
    rule = {"pass": "pass", "maj": "maj"}.get(signal, "weighted" if signal.endswith("_w") else "best")
    scores = pool.scores.get(signal.rsplit("_", 1)[0]) if rule in ("weighted", "best") else None
    vals = []
    for tail in itertools.combinations(range(first, pool.n), k - first):
        sub = [*range(first), *tail]
        vals.append(brute([pool.answers[i] for i in sub], [pool.correct[i] for i in sub], k, rule,
                          [scores[i] for i in sub] if scores else None))
    return sum(vals) / len(vals)


KEEP_POOL = Pool(
    answers=["5", "6", None, "5", "7", "6", "5", "8"],
    correct=[True, False, False, True, False, False, True, False],
    gen_flops=[10.0, 20.0, 5.0, 10.0, 30.0, 10.0, 10.0, 10.0], shared_flops=100.0,
    scores={"v": [0.2, 0.9, 0.5, 0.7, 0.9, 0.1, 0.4, 0.3]}, verifier_flops={"v": 80.0},
)


@pytest.mark.parametrize("first", [0, 1, 3])
def test_keeping_the_probe_matches_enumeration_of_every_draw_that_holds_it(first: int) -> None:
    """A rule that continues from a probe's first M samples: the mean over every draw of k that holds them
    (at M = 0 it is the ordinary estimator; at k = M it is the rule on the first M alone)."""
    for signal in ("pass", "maj", "v_w", "v_best"):
        for k in range(max(first, 1), KEEP_POOL.n + 1):
            got = estimate_keeping(KEEP_POOL, signal, k, first)
            assert got == pytest.approx(brute_keeping(KEEP_POOL, signal, k, first)), (signal, k)
            if first == 0:
                assert got == pytest.approx(estimate(KEEP_POOL, signal, k)), (signal, k)
    # the probe's samples hold 5 (right), 6 (scored 0.9) and nothing: best-of-3 kept picks 6, which is wrong
    assert estimate_keeping(KEEP_POOL, "v_best", 3, 3) == 0.0
    assert estimate_keeping(KEEP_POOL, "pass", 3, 3) == 1.0
    with pytest.raises(ValueError, match="first"):
        estimate_keeping(KEEP_POOL, "maj", 2, 3)


def test_keeping_the_probe_costs_its_decodes_once_and_its_verifier_passes_once() -> None:
    """The M probe decodes are what they cost; the k - M more cost the rest's mean; the rule's verifier
    pays k passes, and the probe's verifier its M passes only when the rule does not use it."""
    p = KEEP_POOL  # rest after 3: mean decode (10 + 30 + 10 + 10 + 10) / 5 = 14; a pass of v costs 80 / 8 = 10
    assert flops_keeping(p, "maj", 3, 3) == pytest.approx(100 + 35)
    assert flops_keeping(p, "maj", 5, 3, "v") == pytest.approx(100 + 35 + 2 * 14 + 3 * 10)
    assert flops_keeping(p, "v_best", 5, 3, "v") == pytest.approx(100 + 35 + 2 * 14 + 5 * 10)
    # keeping everything is the whole pool, as the ordinary estimator costs it
    assert flops_keeping(p, "v_w", 8, 3, "v") == pytest.approx(flops_at_k(p, "v_w", 8))


def test_allocation_keeping_the_probe_is_judged_against_the_plain_pool() -> None:
    """With the probe's samples kept, easy items (their 2 probe samples agree and are right) stop at k = 2
    and hard ones draw all 4: the policy matches uniform maj@4 paying only the easy items' 2 decodes, and
    the baseline and uniform frontier are the plain pool's, never the kept configurations'."""
    from ttcl.runtime.analysis.collect import PooledItem
    from ttcl.runtime.analysis.curves import item_table

    easy = Pool(["4"] * 4, [True] * 4, [5.0] * 4, shared_flops=1.0)
    hard = Pool(["1", "2", "3", "3"], [False, False, True, True], [5.0] * 4, shared_flops=1.0)
    pools = [easy, hard] * 20
    items = [PooledItem(index=i, fields={"steps": 1 if p is easy else 2}, correct=None, pool=p) for i, p in enumerate(pools)]
    table = item_table("m", [items], [1, 2, 4])
    select = split_halves(40, 0)
    bins, _ = probe_bins(pools, 2, select, n_bins=2)
    kept = keeping_table(table, 2)
    assert kept.ks == [2, 4] and kept.acc[("maj", 2)][0] == 1.0
    assert kept.flops[("maj", 2)][0] == pytest.approx(11.0) and kept.flops[("maj", 4)][0] == pytest.approx(21.0)
    out = allocate(kept, bins, select, baseline="maj", points=8, reps=50, reference=table)
    assert out["baseline"]["k"] == 4 and out["baseline"]["flops"] == pytest.approx(21.0)
    report = ~select
    need = float(np.where(bins[report] == bins[0], 11.0, 21.0).mean())
    assert out["policy_flops_to_match"] == pytest.approx(need)
    assert out["saving"] == pytest.approx(21.0 / need) and out["saving"] > 1.0
    assert any(u["choice"] == "maj@1" for u in out["uniform"])  # the plain pool's k = 1, not a kept configuration


def test_pools_from_a_trace_read_shares_scores_and_steps() -> None:
    from ttcl.runtime.analysis.collect import PoolNodes, pools_from_trace
    from ttcl.runtime.trace import ItemRecord, NodeRecord, RunHeader, Trace

    gen = [{"text": "a", "answer": "5", "flops": 10.0}, {"text": "b", "answer": "6", "flops": 30.0}]
    checked = [{**gen[0], "score": 1.0, "step_scores": [1.0, 1.0]}, {**gen[1], "score": 0.0, "step_scores": [1.0, 0.0]}]
    orm = [{**gen[0], "score": 0.9, "flops": 10.0 + 7.0}, {**gen[1], "score": 0.2, "flops": 30.0 + 7.0}]
    trace = Trace(
        header=RunHeader(program="p.ttc", program_hash="h"),
        items={0: ItemRecord(item=0, gold="5", fields={"steps": 2}), 1: ItemRecord(item=1, gold="6")},
        nodes={0: [NodeRecord(item=0, node_id="main/d", op="sample", outputs=gen, cost={"flops": 100.0}),
                   NodeRecord(item=0, node_id="main/c", op="verify", outputs=checked, cost={"flops": 0.0}),
                   NodeRecord(item=0, node_id="main/o", op="verify", outputs=orm, cost={"flops": 14.0})]},
    )
    nodes = PoolNodes("main/d", {"main/c": ("exact", "check"), "main/o": ("orm", "reward")})
    (item,) = pools_from_trace(trace, nodes, only={0})
    p = item.pool
    assert item.fields == {"steps": 2}
    assert p.correct == [True, False] and p.strict == [True, False]
    assert p.shared_flops == 60.0 and p.gen_flops == [10.0, 30.0]
    assert p.scores == {"orm": [0.9, 0.2]} and p.verifier_flops == {"orm": 14.0}
    assert flops_at_k(p, "orm_best", 1) == pytest.approx(60 + 20 + 7)


DUP_POOL = Pool(  # texts 0, 0, 1, 0, 2, 1: three distinct texts, the runtime scored each once (3 x 20 FLOPs)
    answers=["5", "5", "6", "5", "7", "6"], correct=[True, True, False, True, False, False],
    gen_flops=[10.0, 10.0, 20.0, 10.0, 30.0, 20.0], shared_flops=100.0,
    scores={"v": [0.9, 0.9, 0.2, 0.9, 0.5, 0.2]}, verifier_flops={"v": 60.0}, texts=[0, 0, 1, 0, 2, 1],
)


@pytest.mark.parametrize("first", [0, 1, 2, 4])
def test_a_verifier_pays_once_per_distinct_text_drawn_as_the_runtime_does(first: int) -> None:
    """A duplicate sample reuses its twin's score uncharged (VerifyJob): the expected verifier FLOPs at k are the
    mean over every draw (keeping the first `first`) of 20 per distinct text in it, and at k = N the verify node's
    own cost (QA: k x a full share per candidate charged 1.84x the ledger on arith-s at k = 8)."""
    p = DUP_POOL
    for k in range(max(first, 1), p.n + 1):
        draws = [(*range(first), *rest) for rest in itertools.combinations(range(first, p.n), k - first)]
        want = sum(20.0 * len({p.texts[i] for i in d}) for d in draws) / len(draws)
        assert pass_flops(p, "v", k, first) == pytest.approx(want), (k, first)
    assert flops_at_k(p, "v_w", 6) == pytest.approx(100 + sum(p.gen_flops) + 60.0)
    # all distinct (no `texts`): k passes of an equal share, as before
    plain = Pool(p.answers, p.correct, p.gen_flops, 100.0, p.scores, {"v": 60.0})
    assert pass_flops(plain, "v", 3) == pytest.approx(30.0) and pass_flops(plain, "v", 3, 3) == pytest.approx(30.0)


def test_pools_from_a_trace_charge_a_repeated_text_its_share_once() -> None:
    from ttcl.runtime.analysis.collect import PoolNodes, pools_from_trace
    from ttcl.runtime.trace import ItemRecord, NodeRecord, RunHeader, Trace

    gen = [{"prompt": "q", "text": t, "answer": a, "flops": 10.0} for t, a in (("x", "5"), ("x", "5"), ("y", "6"))]
    # the verify node scored "x" and "y" once each (2 x 7 FLOPs); both copies of "x" carry the same share
    orm = [{**g, "score": s, "flops": 17.0} for g, s in zip(gen, (0.9, 0.9, 0.2), strict=True)]
    trace = Trace(
        header=RunHeader(program="p.ttc", program_hash="h"),
        items={0: ItemRecord(item=0, gold="5")},
        nodes={0: [NodeRecord(item=0, node_id="main/d", op="sample", outputs=gen, cost={"flops": 90.0}),
                   NodeRecord(item=0, node_id="main/o", op="verify", outputs=orm, cost={"flops": 14.0})]},
    )
    (item,) = pools_from_trace(trace, PoolNodes("main/d", {"main/o": ("orm", "reward")}))
    p = item.pool
    assert p.texts == [0, 0, 1] and p.verifier_flops == {"orm": 14.0}
    assert flops_at_k(p, "orm_w", 3) == pytest.approx(90.0 + 14.0)  # the two nodes' ledger


@pytest.mark.parametrize("on_server", [False, True])
def test_a_pool_on_a_server_charges_each_draw_its_own_prefill(on_server: bool) -> None:
    """On a server every sample prefills its prompt (docs/endpoints.md), so the sample node's FLOPs beyond the
    decodes are N prefills, not one shared: charged once at every k, k = 1 cost 3x a real single sample on vLLM
    (QA pass). Locally the prefill is shared and paid once."""
    from ttcl.runtime.analysis.collect import PoolNodes, pools_from_trace
    from ttcl.runtime.trace import ItemRecord, NodeRecord, RunHeader, Trace

    ref = "http://127.0.0.1:8000/v1?model=m&engine=vllm" if on_server else "ttcl:arith-m"
    header = RunHeader(program="p.ttc", program_hash="h", models={"policy": ref},
                       **({"engines": {ref: {"engine": "vllm"}}} if on_server else {}))
    gen = [{"prompt": "q", "text": t, "answer": t, "flops": 10.0} for t in "abcd"]
    prefill = 4 * 5.0 if on_server else 5.0  # the node's cost beyond the 4 decodes
    trace = Trace(header=header, items={0: ItemRecord(item=0, gold="a")},
                  nodes={0: [NodeRecord(item=0, node_id="main/d", op="sample", outputs=gen, cost={"flops": 40.0 + prefill})]})
    (item,) = pools_from_trace(trace, PoolNodes("main/d", {}, "policy"))
    assert flops_at_k(item.pool, "maj", 4) == pytest.approx(40.0 + prefill)  # the whole node at k = N, either way
    assert flops_at_k(item.pool, "maj", 1) == pytest.approx(15.0)  # one draw: one prefill and one decode


def test_wilson_holds_the_estimate_at_every_count() -> None:
    """At 0 or n successes the textbook formula can miss p by a rounding step (wilson(0, 50) gave a lower
    bound of 7e-18): a figure then asks matplotlib for a negative error bar and `ttcl eval --plot` failed."""
    for n in range(1, 400):
        for c in {0, 1, n // 2, n - 1, n}:
            lo, hi = wilson(c, n)
            assert 0.0 <= lo <= c / n <= hi <= 1.0, (c, n, lo, hi)


def test_figure_gets_an_allocation_panel(tmp_path) -> None:
    """With `--allocate`, a last panel draws the compute-optimal policy against the best uniform configuration."""
    from ttcl.runtime.analysis.plot import write_figure

    t, bins = _table(40)
    alloc = allocate(t, bins, split_halves(40, 0), baseline="maj", points=8, reps=50)
    assert [u["choice"] for u in alloc["uniform"]] == ["maj@1", "maj@4"]  # the uniform frontier, cheapest first
    assert alloc["uniform"][1]["accuracy"] == 1.0 and alloc["uniform"][1]["flops"] == 40.0
    curves = [{"series": "s", "signal": "maj", "bin": "all", "items": 40, "flops": f, "accuracy": a, "lo": a - 0.1,
               "hi": a + 0.1} for f, a in ((10.0, 0.5), (40.0, 1.0))]
    with_panel, without = tmp_path / "a.png", tmp_path / "b.png"
    titles = write_figure(with_panel, curves=curves, points=[], bins=["all"], by=None, title="t", allocation=alloc)
    assert titles == ["all", "allocation (20 report items)"]
    assert write_figure(without, curves=curves, points=[], bins=["all"], by=None, title="t") == ["all"]
    assert with_panel.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and with_panel.read_bytes() != without.read_bytes()


def test_figure_draws_points_at_the_ends_of_the_scale(tmp_path) -> None:
    """A greedy point at 0% (Wilson, 50 items) and a curve point a rounding step outside its bootstrap
    interval: both are drawn, the bar on that side has length zero."""
    from ttcl.runtime.analysis.plot import write_figure

    lo, hi = wilson(0, 50)
    curves = [{"series": "s", "signal": "maj", "bin": "all", "items": 50, "flops": f, "accuracy": a, "lo": a + 1e-17,
               "hi": a + 0.1} for f, a in ((1e6, 0.3), (2e6, 0.5))]
    points = [{"label": "m greedy", "bin": "all", "items": 50, "flops": 3e6, "accuracy": 0.0, "lo": lo, "hi": hi}]
    out = tmp_path / "f.png"
    write_figure(out, curves=curves, points=points, bins=["all"], by=None, title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@contextmanager
def _panel(xs: tuple[float, float]) -> Iterator[Any]:
    """One panel of `ttcl eval --plot` with a curve over `xs` FLOPs, its axes set and drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ttcl.runtime.analysis.plot import _axes

    fig, ax = plt.subplots()
    try:
        ax.plot(list(xs), [0.2, 0.8])
        _axes(ax, "t")
        fig.canvas.draw()
        yield ax
    finally:
        plt.close(fig)


@pytest.mark.parametrize(("xs", "least", "minor_labels"), [
    ((2.1e6, 4.4e6), 2, True),  # half a decade, no power of ten: minor ticks labelled (had none at all)
    ((1.5e7, 4.5e8), 3, True),  # one power of ten: its label, and minor ones a fifth of the panel apart
    ((1e6, 1e9), 3, False),  # several powers of ten: those alone
])
def test_every_panel_has_at_least_two_flops_labels(xs: tuple[float, float], least: int, minor_labels: bool) -> None:
    """A panel whose FLOPs span less than a decade showed no x label, or one (found by a QA pass)."""
    with _panel(xs) as ax:
        major = [t.get_text() for t in ax.xaxis.get_ticklabels() if t.get_text()]
        minor = [t.get_text() for t in ax.xaxis.get_ticklabels(minor=True) if t.get_text()]
        assert len(major) + len(minor) >= least, (major, minor)
        assert bool(minor) is minor_labels, minor


@pytest.mark.parametrize("xs", [(5.5e6, 1.6e7), (1.1e8, 1.8e8), (1.4e8, 2.7e8), (2.1e6, 4.4e6), (1.5e7, 4.5e8)])
def test_flops_labels_neither_repeat_nor_crowd(xs: tuple[float, float]) -> None:
    """QA pass: 6x10^6 .. 9x10^6 overprinted one another, and a panel under a decade (matplotlib then spaces
    its minor ticks linearly) read 1x10^8 three times. Labels now differ and keep a fifth of the panel apart."""
    with _panel(xs) as ax:
        lo, hi = ax.get_xlim()
        shown = sorted((t.get_position()[0], t.get_text()) for minor in (False, True)
                       for t in ax.xaxis.get_ticklabels(minor=minor) if t.get_text() and lo <= t.get_position()[0] <= hi)
        assert len(shown) >= 2, shown
        assert len({text for _, text in shown}) == len(shown), shown
        gaps = [math.log10(b / a) for (a, _), (b, _) in zip(shown, shown[1:], strict=False)]
        assert min(gaps) >= 0.2 * math.log10(hi / lo) * 0.999, shown


def test_a_long_title_is_wrapped_to_a_one_panel_figure() -> None:
    from ttcl.runtime.analysis.plot import title_lines

    title = "countdown_best_of_n.ttc on countdown.jsonl (90 items, seeds 0; judged by check('countdown'))"
    lines = title_lines(title, 4.2)  # one panel's width: at about 6.2 pt a character, 48 fit on a line
    assert len(lines) == 2 and " ".join(lines) == title and max(map(len, lines)) <= 48
    assert title_lines(title, 12.6) == [title]


def test_interval_method_never_gives_a_zero_width_or_small_sample_bootstrap() -> None:
    """QA: a deterministic run averaged over seeds (0/1 per item) got a bootstrap [1.000, 1.000]; 3 items of
    fractional estimates got [0.000, 0.464] beside Wilson's [0.061, 0.792]. Wilson on the mean is conservative
    for values in [0, 1], so it stands in wherever a percentile bootstrap cannot be trusted."""
    from ttcl.runtime.analysis.intervals import interval, interval_method

    ones = np.ones(12)
    assert interval_method(ones) == "wilson" and interval(ones) == wilson(12, 12) and interval(ones)[0] < 1.0
    few = np.array([0.0, 0.155, 0.31])
    assert interval_method(few) == "wilson-mean" and interval(few) == pytest.approx(wilson(0.465, 3))
    alike = np.full(40, 0.5)
    assert interval_method(alike) == "wilson-mean" and interval(alike)[0] < 0.5 < interval(alike)[1]
    spread = np.tile([0.25, 0.75], 20)
    assert interval_method(spread) == "bootstrap" and interval(spread) == bootstrap_mean(spread)


def test_weighted_at_k_picks_as_the_runtime_vote_on_zero_and_tied_weights() -> None:
    """QA: with every weight 0 the estimator credited nothing, and on a weight tie it split 1/t, where the
    program's own `vote(..., weight = score)` takes the majority, and breaks a weight tie by votes."""
    from ttcl.runtime.values import Candidate, Candidates, vote

    def runtime(answers: list[str], scores: list[float]) -> str | None:
        cands = Candidates(tuple(Candidate(prompt="q", text=a, answer=a, score=s) for a, s in zip(answers, scores, strict=True)))
        return vote(cands, weighted=True).value

    for scores in ([0.0, 0.0, 0.0], [0.5, 0.5, 1.0]):
        assert runtime(["a", "a", "b"], scores) == "a"
        assert vote_at_k(["a", "a", "b"], [True, True, False], 3, weights=scores) == 1.0
    # a tie in weight and votes is still a uniform pick (the runtime takes the earliest; the estimate has no order)
    assert vote_at_k(["a", "b"], [True, False], 2, weights=[0.4, 0.4]) == 0.5
