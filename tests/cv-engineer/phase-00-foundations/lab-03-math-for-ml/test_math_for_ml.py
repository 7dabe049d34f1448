"""Lab 03 checks, each against an independent reference: sklearn's PCA (up to sign) on the digits,
numpy.linalg.svd/eigh, analytic derivatives, scipy.optimize.approx_fprime, scipy.special, sklearn's
LogisticRegression optimum, a hand-worked Bayes example, scipy.stats.norm.fit, and sampling error bounds."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, special, stats
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression


@pytest.fixture(scope="module")
def digits():
    return load_digits().data  # (1797, 64) real handwritten digits


def close(got, want, what, atol=1e-8):
    got, want = np.asarray(got, float), np.asarray(want, float)
    assert got.shape == want.shape, f"{what}: expected shape {want.shape}, got {got.shape}"
    err = np.abs(got - want).max()
    assert err <= atol, f"{what}: max |difference| {err:.3g} exceeds {atol:g}"


def align_signs(rows, ref_rows):
    """Flip each row of `rows` to point the same way as the matching row of `ref_rows`."""
    return rows * np.sign(np.sum(rows * ref_rows, axis=1, keepdims=True))


# ------------------------------------------------------------------ PCA / SVD

@pytest.mark.task("pca-svd")
def test_pca_equals_sklearn_up_to_sign(impl, digits):
    ours = impl.pca_fit(digits, 10)
    ref = PCA(n_components=10, svd_solver="full").fit(digits)
    close(ours.mean, ref.mean_, "mean", 1e-10)
    close(align_signs(ours.components, ref.components_), ref.components_, "components (sign-aligned)", 1e-8)
    close(ours.explained_variance, ref.explained_variance_, "explained_variance", 1e-8)
    close(ours.explained_variance_ratio, ref.explained_variance_ratio_, "explained_variance_ratio", 1e-10)
    close(ours.singular_values, ref.singular_values_, "singular_values", 1e-8)
    z = impl.pca_transform(ours, digits[:50])
    zr = ref.transform(digits[:50])
    close(np.abs(z), np.abs(zr), "|projected coordinates|", 1e-8)


@pytest.mark.task("pca-svd")
def test_pca_round_trip_and_orthonormality(impl, digits):
    full = impl.pca_fit(digits[:200], 64)
    close(full.components @ full.components.T, np.eye(64), "components @ components.T", 1e-9)
    close(full.explained_variance_ratio.sum(), 1.0, "ratios of all components sum to 1", 1e-10)
    close(impl.pca_inverse(full, impl.pca_transform(full, digits[:200])), digits[:200],
          "reconstruction with every component", 1e-8)
    cov_eigs = np.linalg.eigvalsh(np.cov(digits[:200], rowvar=False))[::-1]
    close(full.explained_variance, cov_eigs, "variances = eigenvalues of the covariance", 1e-8)


@pytest.mark.task("pca-svd")
def test_low_rank_is_eckart_young_optimal(impl):
    rng = np.random.default_rng(0)
    M = rng.standard_normal((30, 20))
    s = np.linalg.svd(M, compute_uv=False)
    for k in (1, 5, 19, 20):
        Mk = impl.low_rank_approx(M, k)
        assert np.linalg.matrix_rank(Mk) == k, f"rank-{k} approximation has rank {np.linalg.matrix_rank(Mk)}"
        close(np.linalg.norm(M - Mk), np.sqrt(np.sum(s[k:] ** 2)), f"Frobenius error at k={k}", 1e-9)
    other = rng.standard_normal((30, 3)) @ rng.standard_normal((3, 20))   # any other rank-3 matrix
    assert np.linalg.norm(M - impl.low_rank_approx(M, 3)) < np.linalg.norm(M - other)


# ------------------------------------------------------------------ eigen-decomposition

@pytest.mark.task("power-iteration")
def test_power_iteration_matches_eigh(impl):
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    A = Q @ np.diag([10.0, 6.0, 3.0, 2.0, 1.0, 0.5, 0.2, 0.1]) @ Q.T
    lam, v = impl.power_iteration(A)
    w, V = np.linalg.eigh(A)
    close(lam, w[-1], "top eigenvalue vs eigh", 1e-9)
    close(abs(v @ V[:, -1]), 1.0, "|cos| between eigenvectors", 1e-9)
    close(np.linalg.norm(v), 1.0, "|v|", 1e-12)


@pytest.mark.task("power-iteration")
def test_power_iteration_keeps_the_sign_of_a_negative_eigenvalue(impl):
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    A = Q @ np.diag([-9.0, 4.0, 2.0, 1.0, 0.5]) @ Q.T              # largest magnitude is negative
    lam, v = impl.power_iteration(A)
    close(lam, -9.0, "dominant eigenvalue of diag(-9, 4, 2, 1, 0.5) in a rotated basis", 1e-9)
    close(abs(v @ Q[:, 0]), 1.0, "|cos| with the eigenvector of -9", 1e-9)


@pytest.mark.task("power-iteration")
def test_power_iteration_sign_convention_does_not_depend_on_the_start(impl):
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    A = Q @ np.diag([5.0, 2.0, 1.0, 0.5, 0.3, 0.1]) @ Q.T
    vs = [impl.power_iteration(A, rng=np.random.default_rng(seed))[1] for seed in range(6)]
    for seed, v in enumerate(vs):
        assert v[np.argmax(np.abs(v))] > 0, f"seed {seed}: the largest-magnitude entry of v should be positive"
        close(v, vs[0], f"eigenvector from start seed {seed} vs seed 0", 1e-9)


@pytest.mark.task("power-iteration")
def test_deflation_recovers_top_eigenpairs_of_a_covariance(impl, digits):
    cov = np.cov(digits, rowvar=False)
    values, vectors = impl.top_eigenpairs(cov, 4)
    w, V = np.linalg.eigh(cov)
    close(values, w[::-1][:4], "top-4 eigenvalues of the digits covariance vs eigh", 1e-6 * w[-1])
    cos = np.abs(np.sum(vectors * V[:, ::-1][:, :4], axis=0))
    close(cos, np.ones(4), "|cos| of each eigenvector with eigh's", 1e-6)


# ------------------------------------------------------------------ numerical gradients

@pytest.mark.task("numerical-grad")
def test_numerical_gradient_of_known_functions(impl):
    x = np.array([[0.3, -1.2], [2.0, 0.5]])
    close(impl.numerical_gradient(lambda a: np.sum(a ** 3), x), 3 * x ** 2, "d sum(x^3) = 3x^2", 1e-7)
    close(impl.numerical_gradient(lambda a: np.sin(a).prod(), x[0]),
          np.array([np.cos(0.3) * np.sin(-1.2), np.sin(0.3) * np.cos(-1.2)]), "d sin(a)sin(b)", 1e-8)
    before = x.copy()
    impl.numerical_gradient(lambda a: float(a.sum()), x)
    assert np.array_equal(x, before), "numerical_gradient must leave its input unchanged"


@pytest.mark.task("numerical-grad")
def test_central_differences_are_second_order(impl):
    f = np.exp
    x = np.array([1.0])
    e1 = abs(impl.numerical_gradient(lambda a: float(f(a[0])), x, 1e-2)[0] - np.e)
    e2 = abs(impl.numerical_gradient(lambda a: float(f(a[0])), x, 1e-3)[0] - np.e)
    assert 50 < e1 / e2 < 200, f"shrinking eps 10x should shrink a central difference's error ~100x, got {e1 / e2:.1f}x"


# ------------------------------------------------------------------ softmax cross-entropy

@pytest.mark.task("softmax-ce")
def test_softmax_and_cross_entropy_equal_scipy(impl):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 5)) * 3
    labels = rng.integers(0, 5, 6)
    close(impl.softmax(logits), special.softmax(logits, axis=1), "softmax vs scipy.special.softmax", 1e-12)
    want = -special.log_softmax(logits, axis=1)[np.arange(6), labels].mean()
    close(impl.cross_entropy(logits, labels), want, "cross_entropy vs scipy log_softmax", 1e-12)
    huge = np.array([[1000.0, 0.0, -1000.0]])
    assert np.all(np.isfinite(impl.softmax(huge))), "softmax of [1000, 0, -1000] must stay finite (shift by max)"
    close(impl.cross_entropy(huge, np.array([2])), 2000.0, "CE of a label with logit -1000 vs max 1000", 1e-9)


@pytest.mark.task("softmax-ce")
def test_softmax_shifts_each_row_by_its_own_max(impl):
    logits = np.array([[1000.0, 999.0], [-1000.0, -1001.0]])        # two rows on very different scales
    want = np.array([[1, np.exp(-1)], [1, np.exp(-1)]]) / (1 + np.exp(-1))
    close(impl.softmax(logits), want, "softmax of a high row and a low row", 1e-12)
    close(impl.cross_entropy(logits, np.array([1, 0])), (np.log1p(np.exp(-1)) + 1 + np.log1p(np.exp(-1))) / 2,
          "CE over the two rows", 1e-12)


@pytest.mark.task("softmax-ce")
@settings(max_examples=15, deadline=None)
@given(st.integers(1, 5), st.integers(2, 6), st.integers(0, 10_000))
def test_cross_entropy_gradient_equals_finite_differences(impl, n, c, seed):
    rng = np.random.default_rng(seed)
    logits, labels = rng.standard_normal((n, c)) * 2, rng.integers(0, c, n)
    ref = optimize.approx_fprime(logits.ravel(), lambda z: float(
        -special.log_softmax(z.reshape(n, c), axis=1)[np.arange(n), labels].mean()), 1e-7).reshape(n, c)
    got = impl.cross_entropy_grad(logits, labels)
    close(got, ref, "CE gradient vs scipy approx_fprime", 1e-5)
    onehot = np.eye(c)[labels]
    close(got, (special.softmax(logits, axis=1) - onehot) / n, "CE gradient = (p - y) / N", 1e-12)


# ------------------------------------------------------------------ logistic regression

@pytest.fixture(scope="module")
def threes_and_eights(digits):
    y = load_digits().target
    mask = (y == 3) | (y == 8)
    return digits[mask] / 16.0, (y[mask] == 8).astype(float)


@pytest.mark.task("logistic-grad")
def test_logistic_loss_and_gradient_against_references(impl, threes_and_eights):
    X, y = threes_and_eights
    rng = np.random.default_rng(0)
    w, b, l2 = rng.standard_normal(64) * 0.2, -0.3, 0.05
    p = special.expit(X @ w + b)
    want = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)) + 0.5 * l2 * w @ w
    close(impl.logistic_loss(w, b, X, y, l2), want, "loss vs the textbook formula", 1e-10)
    theta = np.append(w, b)
    ref = optimize.approx_fprime(theta, lambda t: float(
        -np.mean(y * np.log(special.expit(X @ t[:-1] + t[-1])) + (1 - y) * np.log(special.expit(-(X @ t[:-1] + t[-1]))))
        + 0.5 * l2 * t[:-1] @ t[:-1]), 1e-7)
    dw, db = impl.logistic_grad(w, b, X, y, l2)
    close(np.append(dw, db), ref, "gradient vs scipy approx_fprime", 1e-5)


@pytest.mark.task("logistic-grad")
def test_logistic_loss_stays_finite_for_confident_predictions(impl):
    # z = +-40: sigmoid rounds to exactly 1 or 0 in float64, yet log(1 + e^40) = 40 + log1p(e^-40) ~ 40.
    X, y = np.array([[1.0], [1.0], [-1.0]]), np.array([0.0, 1.0, 1.0])
    w, b = np.array([40.0]), 0.0
    # per sample: log(1 + e^40) = 40 (y=0, z=40), ~0 (y=1, z=40), log(1 + e^40) = 40 (y=1, z=-40)
    close(impl.logistic_loss(w, b, X, y), 80.0 / 3, "loss with |z| = 40 (hand-worked)", 1e-9)
    dw, db = impl.logistic_grad(w, b, X, y)
    close(np.append(dw, db), [(1 + 0 + 1) / 3, (1 + 0 - 1) / 3], "gradient with |z| = 40 (p - y is 1, 0, -1)", 1e-9)


@pytest.mark.task("logistic-grad")
def test_minimising_our_loss_gives_sklearns_logistic_regression(impl, threes_and_eights):
    X, y = threes_and_eights
    l2 = 0.01
    res = optimize.minimize(lambda t: impl.logistic_loss(t[:-1], t[-1], X, y, l2), np.zeros(65),
                            jac=lambda t: np.append(*impl.logistic_grad(t[:-1], t[-1], X, y, l2)),
                            method="L-BFGS-B", options={"gtol": 1e-10, "maxiter": 5000})
    # sklearn minimises C * sum(log-loss) + |w|^2 / 2, the same optimum as ours when C = 1 / (N * l2)
    ref = LogisticRegression(C=1 / (len(y) * l2), tol=1e-10, max_iter=10_000).fit(X, y)
    close(res.x[:-1], ref.coef_.ravel(), "weights vs sklearn LogisticRegression", 1e-4)
    close(res.x[-1], ref.intercept_[0], "bias vs sklearn", 1e-4)


# ------------------------------------------------------------------ Bayes

@pytest.mark.task("bayes")
def test_rare_disease_posterior_by_hand(impl):
    # 1% prevalence, 99% sensitivity, 95% specificity:
    # P(+) = 0.01 * 0.99 + 0.99 * 0.05 = 0.0099 + 0.0495 = 0.0594;  P(D | +) = 0.0099 / 0.0594 = 1/6
    got = impl.positive_test_posterior(0.01, 0.99, 0.95)
    close(got, 1 / 6, "P(disease | positive)", 1e-12)
    # a second positive test uses 1/6 as the new prior: 0.99/6 / (0.99/6 + 0.05*5/6) = 0.99 / 1.24
    close(impl.positive_test_posterior(got, 0.99, 0.95), 0.99 / 1.24, "after two positive tests", 1e-12)


@pytest.mark.task("bayes")
def test_bayes_posterior_on_three_coins(impl):
    # coins with P(heads) 0.2, 0.5, 0.8 equally likely; we see heads, heads, tails
    like = np.array([0.2 ** 2 * 0.8, 0.5 ** 3, 0.8 ** 2 * 0.2])     # 0.032, 0.125, 0.128
    got = impl.bayes_posterior(np.full(3, 1 / 3), like)
    close(got, np.array([0.032, 0.125, 0.128]) / 0.285, "posterior over three coins", 1e-12)
    with pytest.raises(ValueError):
        impl.bayes_posterior([0.5, 0.5], [0.0, 0.0])


# ------------------------------------------------------------------ distributions

@pytest.mark.task("distributions")
def test_gaussian_mle_equals_scipy_norm_fit(impl):
    rng = np.random.default_rng(0)
    for mu, sigma, n in [(3.0, 2.0, 1000), (-1.0, 0.1, 7), (100.0, 15.0, 50)]:
        x = rng.normal(mu, sigma, n)
        close(impl.gaussian_mle(x), stats.norm.fit(x), f"MLE on {n} draws of N({mu}, {sigma}^2) vs norm.fit", 1e-10)
    x = rng.normal(0, 1, 20)
    close(impl.gaussian_logpdf(x, 0.5, 1.7), stats.norm.logpdf(x, 0.5, 1.7), "logpdf vs scipy.stats.norm", 1e-12)
    m, s = impl.gaussian_mle(x)
    for dm, ds in [(0.05, 0.0), (0.0, 0.05), (-0.05, -0.05)]:   # the MLE maximises the log-likelihood
        assert impl.gaussian_logpdf(x, m, s).sum() > stats.norm.logpdf(x, m + dm, s + ds).sum()


@pytest.mark.task("distributions")
def test_mvn_samples_have_the_right_moments(impl):
    rng = np.random.default_rng(0)
    mean = np.array([1.0, -2.0, 0.5])
    cov = np.array([[2.0, 0.8, 0.3], [0.8, 1.0, -0.2], [0.3, -0.2, 0.5]])
    n = 40_000
    x = impl.sample_mvn(mean, cov, n, rng)
    assert x.shape == (n, 3), f"expected ({n}, 3) samples, got {x.shape}"
    se_mean = np.sqrt(np.diag(cov) / n)                                # standard error of each mean
    assert np.all(np.abs(x.mean(0) - mean) < 4 * se_mean), \
        f"sample mean {x.mean(0)} is more than 4 standard errors from {mean}"
    se_cov = np.sqrt((cov ** 2 + np.outer(np.diag(cov), np.diag(cov))) / n)   # Gaussian: Var(s_ij) = (c_ij^2 + c_ii c_jj)/n
    err = np.abs(np.cov(x, rowvar=False) - cov)
    assert np.all(err < 4 * se_cov), f"sample covariance off by {err.max():.4f}, more than 4 standard errors"
    ks = stats.kstest((x[:, 0] - mean[0]) / np.sqrt(cov[0, 0]), "norm")
    assert ks.pvalue > 1e-3, f"the first coordinate should be Gaussian; KS p-value {ks.pvalue:.2g}"
