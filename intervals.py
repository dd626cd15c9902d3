"""The 95% intervals every table reports, in one place (no scipy: the standard library only).

    wilson(k, n)       # k successes of n episodes -> [low, high], the Wilson score interval
    t975(df)           # the Student-t 0.975 quantile, any degrees of freedom (12.706 at 1, 2.042 at 30)
    mde(sd, n)         # the smallest paired difference n seeds detect with 80% power, given the seed-level SD
    t_interval(xs)     # mean and 95% t-interval of per-seed values (nan bounds with one value)

Used by evaluate.py (Wilson per task, family and overall), compare.py (t over seeds, Wilson over episodes) and
results/libero_wrist/run.py. `python intervals.py` prints the quantiles beside the textbook table's.
"""
import math


def wilson(k, n, z=1.96):
    """k successes out of n: the Wilson score interval [low, high] (Wilson 1927). Unlike rate +- z*se it stays
    in [0, 1] and is not empty at 0 or n successes. No episodes: [0, 1], nothing is known."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]  # clipped: float rounding only, at k = 0 or n


def betainc(a, b, x):
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (modified Lentz; Numerical
    Recipes 6.4). The fraction converges fast for x < (a + 1) / (a + b + 2); above, I_x(a, b) = 1 - I_{1-x}(b, a)."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    if x > (a + 1) / (a + b + 2):
        return 1 - betainc(b, a, 1 - x)
    front = math.exp(a * math.log(x) + b * math.log1p(-x) + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)) / a
    tiny, f, c, d = 1e-300, 1.0, 1.0, 0.0
    for i in range(1000):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:  # the fraction's even terms d_2m
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:  # odd terms d_2m+1
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1 + num * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + num / c
        c = c if abs(c) > tiny else tiny
        f *= c * d
        if abs(1 - c * d) < 1e-15:
            break
    return front * (f - 1)


def t_upper(q, df):
    """The t with P(T > t) = q (0 < q <= 0.5) for Student's t with df degrees of freedom. The two tails beyond
    +-t are I_{df/(df+t^2)}(df/2, 1/2), which falls as t grows: bisection to float precision."""
    if df < 1 or not 0 < q <= 0.5:
        raise ValueError(f"t_upper: expected df >= 1 and 0 < q <= 0.5, got {df}, {q}")
    lo, hi = 0.0, 1e4  # 12.706 at q 0.025, df 1; 318 at q 0.001
    for _ in range(200):
        mid = (lo + hi) / 2
        if betainc(df / 2, 0.5, df / (df + mid * mid)) > 2 * q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


def t975(df):
    """The 0.975 quantile of Student's t with df degrees of freedom: the t where the two tails hold 5%."""
    if df < 1:
        raise ValueError(f"t975: expected df >= 1, got {df}")
    return t_upper(0.025, df)


def mde(sd, n, power=0.8):
    """The smallest true paired mean difference that n paired seeds detect with probability `power` (the 95%
    t-interval of the difference excludes 0), when the difference's seed-to-seed SD is sd:
    (t975(n-1) + t_{power}(n-1)) * sd / sqrt(n), the usual shifted-t approximation of the noncentral t (the lower
    tail ignored; tests/test_intervals.py checks it against a simulation). The design's resolution, before it runs."""
    if n < 2:
        return float("inf")
    return (t975(n - 1) + t_upper(1 - power, n - 1)) * sd / math.sqrt(n)


def t_interval(xs):
    """Mean and 95% t-interval [low, high] of per-seed values (nan bounds with one value: no spread to go by)."""
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, [float("nan")] * 2
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    h = t975(len(xs) - 1) * sd / math.sqrt(len(xs))
    return m, [m - h, m + h]


if __name__ == "__main__":
    table = {1: 12.706, 2: 4.303, 3: 3.182, 5: 2.571, 10: 2.228, 15: 2.131, 16: 2.120, 30: 2.042, 120: 1.980}
    for df, tab in table.items():
        print(f"df {df:3d}: t975 {t975(df):.4f} (table {tab})")
    print(f"Wilson 95%: 0 of 10 {wilson(0, 10)}, 3 of 10 {wilson(3, 10)}, 10 of 10 {wilson(10, 10)}")
