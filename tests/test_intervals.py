"""The tables' 95% intervals (intervals.py) against tabulated values: Student-t quantiles at any degrees of
freedom, Wilson intervals at every success count, the t-interval worked by hand.

    python -m pytest -q tests/test_intervals.py
"""
import math

import pytest

from intervals import betainc, t975, t_interval, wilson, mde, t_upper

# t_{0.975, df} from the textbook table (3 decimals); compare.py's old table stopped at df 15
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 15: 2.131, 16: 2.120, 20: 2.086, 30: 2.042,
           60: 2.000, 120: 1.980}


@pytest.mark.parametrize("df", list(T_TABLE))
def test_t975_matches_the_table_at_any_degrees_of_freedom(df):
    assert t975(df) == pytest.approx(T_TABLE[df], abs=5e-4)


def test_t975_exact_values_and_the_normal_limit():
    assert t975(1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-10)  # Cauchy: closed form
    assert t975(2) == pytest.approx(0.95 / math.sqrt(2 * 0.975 * 0.025), rel=1e-10)  # df 2: (2p - 1) / sqrt(2p(1 - p))
    assert 1.95996 < t975(10 ** 6) < t975(1000) < t975(120)  # falls towards z = 1.959964
    assert betainc(2, 3, 0.4) == pytest.approx(0.5248, abs=1e-12)  # I_0.4(2, 3) = 1 - 0.6^4 - 4 * 0.4 * 0.6^3


# Wilson 95% intervals (z = 1.96) at every count: k of 4, k of 2, and wider n; tabulated to 4 decimals
WILSON = {(0, 4): (0, .4899), (1, 4): (.0456, .6994), (2, 4): (.15, .85), (3, 4): (.3006, .9544), (4, 4): (.5101, 1),
          (0, 2): (0, .6576), (1, 2): (.0945, .9055), (2, 2): (.3424, 1), (3, 10): (.1078, .6032),
          (1, 60): (.00295, .08855), (29, 200): (.1029, .2005), (45, 200): (.1727, .2877)}


@pytest.mark.parametrize("k,n", list(WILSON))
def test_wilson_matches_the_table_at_every_count(k, n):
    assert wilson(k, n) == pytest.approx(WILSON[k, n], abs=1e-4)


def test_t_interval_worked_by_hand():
    m, (lo, hi) = t_interval([0.30, 0.25, 0.35])  # mean 0.30, sd 0.05, df 2
    h = 4.302653 * 0.05 / math.sqrt(3)
    assert m == pytest.approx(0.30) and lo == pytest.approx(0.30 - h, abs=1e-6) and hi == pytest.approx(0.30 + h, abs=1e-6)
    xs = [0.1 * (i % 5) for i in range(20)]  # 20 seeds: df 19, t 2.093 (the old table used df 15's 2.13)
    m, (lo, hi) = t_interval(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / 19)
    assert hi - m == pytest.approx(2.093 * sd / math.sqrt(20), abs=1e-3 * sd)
    m, ci = t_interval([0.4])
    assert m == 0.4 and all(c != c for c in ci)  # one seed: no interval


def test_mde_is_the_effect_detected_with_80_percent_power():
    """The design's resolution: t_{0.80} against the table, then a simulation of the paired design at the computed
    effect (normal differences, 20,000 designs of n seeds) detects it about 80% of the time; a wrong quantile
    (0.975 twice, or z in place of t) moves the simulated power by more than the tolerance."""
    np = pytest.importorskip("numpy")
    assert t_upper(0.2, 7) == pytest.approx(0.896, abs=1e-3) and t_upper(0.2, 2) == pytest.approx(1.061, abs=1e-3)
    assert t_upper(0.025, 5) == pytest.approx(t975(5)) and mde(10.0, 1) == float("inf")
    rng = np.random.default_rng(0)
    for n in (5, 8, 12):
        effect = mde(10.0, n)
        x = rng.normal(effect, 10.0, size=(20000, n))  # (designs, seeds): paired differences
        low = x.mean(1) - t975(n - 1) * x.std(1, ddof=1) / math.sqrt(n)
        assert 0.78 < (low > 0).mean() < 0.82, (n, effect, (low > 0).mean())
