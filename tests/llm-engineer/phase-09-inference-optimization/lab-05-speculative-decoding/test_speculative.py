"""Speculative decoding checks. References: hand-worked cases, chi-square goodness of fit (scipy) against the
target's exact distribution, the theoretical acceptance rate sum min(p, q), transformers' greedy `generate` and
assisted generation (`assistant_model=`), brute-force sums and Monte Carlo for the speed-up formula."""
import copy
import math

import pytest
import torch

scipy_stats = pytest.importorskip("scipy.stats")
transformers = pytest.importorskip("transformers")
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread (labkit plugin)

# Position-dependent tables on a 5-token vocabulary: p has k + 1 = 4 rows, q has k = 3. Row 2 of q puts mass on a
# token p never emits (4), row 0 of p is 0 where q is largest, so rejections and residuals really happen.
P = torch.tensor([[0.05, 0.40, 0.30, 0.25, 0.00],
                  [0.30, 0.10, 0.20, 0.10, 0.30],
                  [0.50, 0.05, 0.05, 0.40, 0.00],
                  [0.10, 0.20, 0.30, 0.15, 0.25]])
Q = torch.tensor([[0.60, 0.10, 0.10, 0.10, 0.10],
                  [0.20, 0.20, 0.20, 0.20, 0.20],
                  [0.10, 0.10, 0.20, 0.20, 0.40]])


def chi_square_p_value(counts, probs):
    """Goodness-of-fit p-value of observed counts against probabilities (cells with p = 0 must be empty)."""
    counts, probs = torch.as_tensor(counts, dtype=torch.float64), torch.as_tensor(probs, dtype=torch.float64)
    assert counts[probs == 0].sum() == 0, f"tokens with target probability 0 were emitted: counts {counts.tolist()}"
    expected = probs / probs.sum() * counts.sum()
    small = expected < 5  # pool the rare cells into one, so every cell expects at least a few counts
    obs = torch.cat([counts[~small], counts[small].sum().view(1)]) if small.any() else counts
    exp = torch.cat([expected[~small], expected[small].sum().view(1)]) if small.any() else expected
    keep = exp > 0
    return float(scipy_stats.chisquare(obs[keep].numpy(), exp[keep].numpy()).pvalue)


def run_verify(impl, n, p=P, q=Q, seed=0):
    """n one-step verifications with drafts sampled from q. Returns the emitted sequences and the m's."""
    gen = torch.Generator().manual_seed(seed)
    k = q.size(0)
    emitted, ms = [], []
    for _ in range(n):
        drafts = torch.stack([torch.multinomial(q[i], 1, generator=gen)[0] for i in range(k)])
        m, token = impl.verify_sampled(p, q, drafts, gen)
        ms.append(m)
        emitted.append(drafts[:m].tolist() + [token])
    return emitted, ms


def tiny_llama(seed, vocab=8, hidden=16, layers=1, heads=2, std=1.0):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=256,
                         bos_token_id=None, eos_token_id=None, pad_token_id=None, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # larger weights than the 0.02 init: peaked, context-dependent next-token distributions
        for name, param in model.named_parameters():
            if param.dim() > 1:
                param.normal_(0, std / math.sqrt(param.size(1)) if "embed" not in name else std)
    return model


@pytest.fixture(scope="module")
def models():
    """A tiny target and a draft that agrees with it part of the time: the target's weights plus 5% noise
    (measured greedy acceptance 0.47-0.71 on the prompts below, so long accepted runs and rejections both occur)."""
    target = tiny_llama(1, vocab=32, hidden=32, layers=2, heads=4, std=2.0)
    draft = copy.deepcopy(target)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for param in draft.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.05 * param.std())
    return target, draft


def hf_greedy(model, ids, n, **kwargs):
    with torch.no_grad():
        return model.generate(ids, max_new_tokens=n, min_new_tokens=n if "eos_token_id" not in kwargs else 0,
                              do_sample=False, **kwargs)


# --------------------------------------------------------------------------- accept-step

@pytest.mark.task("accept-step")
def test_residual_by_hand(impl):
    p = torch.tensor([0.5, 0.3, 0.2, 0.0])
    q = torch.tensor([0.2, 0.2, 0.3, 0.3])
    # max(0, p - q) = [0.3, 0.1, 0, 0], normaliser 0.4 = 1 - sum min(p, q) = 1 - 0.6
    got = impl.residual_distribution(p, q)
    assert torch.allclose(got, torch.tensor([0.75, 0.25, 0.0, 0.0])), f"expected [0.75, 0.25, 0, 0], got {got.tolist()}"
    both = impl.residual_distribution(torch.stack([p, q]), torch.stack([q, p]))
    assert torch.allclose(both[1], torch.tensor([0.0, 0.0, 0.25, 0.75])), \
        f"rows must be normalised independently, got {both.tolist()}"
    same = impl.residual_distribution(p, p.clone())
    assert torch.isfinite(same).all() and torch.allclose(same, p), \
        f"p == q leaves no residual: expected the defined fallback p, got {same.tolist()}"


@pytest.mark.task("accept-step")
def test_deterministic_cases(impl):
    gen = torch.Generator().manual_seed(0)
    p = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    for _ in range(20):  # q == p on the drafted tokens: always accepted, and the bonus comes from the last row
        m, token = impl.verify_sampled(p, p[:2].clone(), torch.tensor([1, 2]), gen)
        assert (m, token) == (2, 0), f"drafts the target emits with probability 1 must pass and the bonus come " \
                                     f"from p[k]; expected (2, 0), got ({m}, {token})"
    q = torch.tensor([[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    for _ in range(20):  # p(d_1) = 0: rejected at 0; the residual of row 0 is all on token 1
        m, token = impl.verify_sampled(p, q, torch.tensor([0, 2]), gen)
        assert (m, token) == (0, 1), f"a draft with target probability 0 must be rejected and replaced from the " \
                                     f"residual; expected (0, 1), got ({m}, {token})"
    p2 = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    for _ in range(20):  # d_1 accepted for sure (p >= q), d_2 has p = 0: m = 1, then the residual of row 1 -> 2
        m, token = impl.verify_sampled(p2, q, torch.tensor([1, 0]), gen)
        assert (m, token) == (1, 2), f"expected (1, 2) (accept the first, reject the second), got ({m}, {token})"


@pytest.mark.task("accept-step")
def test_zero_drafts_sample_the_target(impl):
    gen = torch.Generator().manual_seed(3)
    p = torch.tensor([[0.2, 0.8]])
    tokens = [impl.verify_sampled(p, torch.empty(0, 2), torch.empty(0, dtype=torch.long), gen) for _ in range(2000)]
    assert all(m == 0 for m, _ in tokens), "with k = 0 nothing can be accepted"
    ones = sum(t for _, t in tokens)
    assert abs(ones / 2000 - 0.8) < 0.04, f"with k = 0 the token must come from p[0] = [0.2, 0.8]; got P(1) = {ones / 2000}"


@pytest.mark.task("accept-step")
def test_bad_shapes_are_refused(impl):
    m, token = impl.verify_sampled(P, Q, torch.tensor([1, 0, 0]), torch.Generator().manual_seed(0))
    assert 0 <= m <= 3 and 0 <= token < 5
    with pytest.raises(ValueError):
        impl.verify_sampled(P[:3], Q, torch.tensor([0, 1, 2]))  # p needs k + 1 rows
    with pytest.raises(ValueError):
        impl.residual_distribution(P[0], Q[0, :4])


@pytest.fixture(scope="module")
def verify_runs(impl):
    """20,000 one-step verifications on the tables P, Q: (emitted sequences, accepted counts m)."""
    return run_verify(impl, 20_000)


@pytest.mark.task("accept-step")
def test_every_emitted_position_follows_the_target(verify_runs):
    # Token j of an iteration (when emitted) must follow P[j]: the rule's exactness claim, position by position
    # (the bonus included). Chi-square p-values must not be tiny.
    emitted, _ = verify_runs
    for j in range(4):
        counts = torch.zeros(5)
        for seq in emitted:
            if len(seq) > j:
                counts[seq[j]] += 1
        assert counts.sum() > 500, f"too few iterations reached position {j} ({int(counts.sum())})"
        pv = chi_square_p_value(counts, P[j])
        assert pv > 1e-3, (f"emitted tokens at position {j} do not follow the target's p{j} = {P[j].tolist()}: "
                           f"frequencies {(counts / counts.sum()).tolist()}, chi-square p = {pv:.2e}")


@pytest.mark.task("accept-step")
def test_acceptance_matches_theory(verify_runs):
    # P(d_1 accepted) = sum min(P0, Q0) = 0.35; P(d_1 and d_2) = 0.35 * sum min(P1, Q1) = 0.35 * 0.8 = 0.28
    _, ms = verify_runs
    n = len(ms)
    for reach, alpha in ((1, 0.35), (2, 0.35 * 0.8), (3, 0.35 * 0.8 * 0.4)):
        rate = sum(m >= reach for m in ms) / n
        sigma = math.sqrt(alpha * (1 - alpha) / n)
        assert abs(rate - alpha) < 5 * sigma, (f"P(first {reach} drafts accepted) should be {alpha:.4f} "
                                               f"(product of sum min(p, q)); measured {rate:.4f}")


# --------------------------------------------------------------------------- greedy-spec

@pytest.mark.task("greedy-spec")
def test_greedy_verify_by_hand(impl):
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 1.0], [0.0, 0.0, 5.0], [1.0, 0.0, 0.0]])  # argmax 1, 0, 2, 0
    cases = [([1, 0, 2], (3, 0)), ([1, 0, 1], (2, 2)), ([2, 0, 2], (0, 1)), ([1, 2, 2], (1, 0))]
    for drafts, expected in cases:
        got = impl.verify_greedy(logits, torch.tensor(drafts))
        assert tuple(got) == expected, f"drafts {drafts} against argmax [1, 0, 2, 0]: expected {expected}, got {got}"
    got = impl.verify_greedy(logits[:1], torch.empty(0, dtype=torch.long))
    assert tuple(got) == (0, 1), f"with no drafts the target's own argmax comes next: expected (0, 1), got {got}"


@pytest.mark.task("greedy-spec")
def test_greedy_ties_go_to_the_lowest_id(impl):
    # row 0 ties tokens 1 and 2: the target's greedy step (torch.argmax, transformers) picks 1, so a draft of 2
    # is a mismatch even though its logit equals the maximum
    logits = torch.tensor([[0.0, 4.0, 4.0], [9.0, 0.0, 0.0]])
    assert tuple(impl.verify_greedy(logits, torch.tensor([2]))) == (0, 1), "a tie must resolve to the lowest id"
    assert tuple(impl.verify_greedy(logits, torch.tensor([1]))) == (1, 0)


@pytest.mark.task("greedy-spec")
@pytest.mark.parametrize("k", [1, 3, 5])
def test_greedy_equals_target_and_assisted_generation(impl, models, k):
    target, draft = models
    prompt = torch.tensor([[3, 1, 4, 1, 5, 9, 2]])
    n = 24
    ours = impl.speculative_generate(target, draft, prompt, n, k)
    ref = hf_greedy(target, prompt, n)
    assert torch.equal(ours.tokens, ref), (f"k={k}: greedy speculative output differs from the target's greedy "
                                           f"output\n ours {ours.tokens.tolist()}\n  ref {ref.tolist()}")
    draft.generation_config.num_assistant_tokens = k
    draft.generation_config.num_assistant_tokens_schedule = "constant"
    draft.generation_config.assistant_confidence_threshold = 0.0
    assisted = hf_greedy(target, prompt, n, assistant_model=draft)
    assert torch.equal(ours.tokens, assisted), "differs from transformers' assisted generation (assistant_model=)"
    assert 0 < sum(ours.accepted) < sum(ours.drafted), "this draft should be right sometimes and wrong sometimes"


@pytest.mark.task("greedy-spec")
def test_greedy_with_a_perfect_draft_accepts_everything(impl, models):
    target, _ = models
    prompt = torch.tensor([[7, 7, 1]])
    run = impl.speculative_generate(target, target, prompt, 17, 4)
    assert run.accepted == run.drafted, f"a draft equal to the target must be accepted every time: {run.accepted}"
    assert run.drafted == [4, 4, 4, 1], f"17 tokens at k=4: iterations of 5, 5, 5, 2 tokens; got k's {run.drafted}"
    assert torch.equal(run.tokens, hf_greedy(target, prompt, 17))


# --------------------------------------------------------------------------- spec-loop

@pytest.mark.task("spec-loop")
def test_trim_cache(impl):
    cache = DynamicCache()
    target = tiny_llama(5)
    with torch.no_grad():
        target(torch.tensor([[1, 2, 3, 4, 5]]), past_key_values=cache, use_cache=True)
    impl.trim_cache(cache, 5)
    assert cache.get_seq_length() == 5, "keeping every position must change nothing"
    impl.trim_cache(cache, 2)
    assert cache.get_seq_length() == 2, f"expected 2 positions after trimming, got {cache.get_seq_length()}"
    with pytest.raises(ValueError):
        impl.trim_cache(cache, 3)


@pytest.mark.task("spec-loop")
@pytest.mark.parametrize("k,n", [(2, 30), (4, 23), (7, 9)])
def test_loop_rolls_back_both_caches(impl, models, k, n):
    # greedy through the loop, many rejections: any stale position in either cache changes later tokens
    target, draft = models
    prompt = torch.tensor([[5, 6, 7]])
    run = impl.speculative_generate(target, draft, prompt, n, k)
    ref = hf_greedy(target, prompt, n)
    assert run.tokens.size(1) == prompt.size(1) + n, f"expected exactly {n} new tokens, got {run.tokens.size(1) - 3}"
    assert torch.equal(run.tokens, ref), f"k={k}: tokens differ from the target's greedy output:\n {run.tokens.tolist()}\n {ref.tolist()}"
    assert len(run.drafted) == len(run.accepted) and sum(m + 1 for m in run.accepted) == n, \
        "each iteration emits its accepted drafts plus one token"


@pytest.mark.task("spec-loop")
def test_sampled_perfect_draft_is_always_accepted(impl, models):
    # draft == target: q == p at every position (up to float noise between a 1-token and a block forward), so
    # min(1, p/q) = 1 and every iteration emits k + 1 tokens. A stale or skipped position in the draft's cache
    # makes its q differ from the target's p and shows up here as rejections (the greedy output cannot show it:
    # it is the target's whatever the draft proposes).
    target, _ = models
    gen = torch.Generator().manual_seed(0)
    run = impl.speculative_generate(target, target, torch.tensor([[2, 9, 4]]), 40, 3, temperature=0.5, generator=gen)
    assert run.tokens.size(1) == 43, f"expected 40 new tokens, got {run.tokens.size(1) - 3}"
    rejected = sum(k - m for k, m in zip(run.drafted, run.accepted))
    assert rejected == 0, f"a draft identical to the target was rejected {rejected} times (k, m per iteration: " \
                          f"{list(zip(run.drafted, run.accepted))})"
    assert run.drafted == [3] * 10, f"40 tokens at k = 3 are 10 iterations of 4; got k's {run.drafted}"


@pytest.mark.task("spec-loop")
def test_eos_stops_generation(impl, models):
    target, draft = models
    prompt = torch.tensor([[5, 6, 7]])
    full = hf_greedy(target, prompt, 20)[0, 3:].tolist()
    eos = full[6]
    first = full.index(eos)
    run = impl.speculative_generate(target, draft, prompt, 20, 3, eos_token_id=eos)
    assert run.tokens[0, 3:].tolist() == full[:first + 1], \
        f"generation must stop right after the first EOS ({eos}): expected {full[:first + 1]}, got {run.tokens[0, 3:].tolist()}"


@pytest.fixture(scope="module")
def small_pair():
    target = tiny_llama(11, vocab=6, hidden=16, layers=1, heads=2, std=1.5)
    draft = tiny_llama(12, vocab=6, hidden=8, layers=1, heads=1, std=1.5)
    return target, draft


TEMP = 0.6  # sampling temperature of the loop tests (far enough from 1 that a forgotten temperature shows)


@pytest.fixture(scope="module")
def sampled_runs(impl, small_pair):
    """1,500 sampled generations of 3 tokens at k=2 from one prompt, with the per-run results."""
    target, draft = small_pair
    gen = torch.Generator().manual_seed(0)
    prompt = torch.tensor([[1, 4, 2]])
    return [impl.speculative_generate(target, draft, prompt, 3, 2, temperature=TEMP, generator=gen)
            for _ in range(1500)]


def exact_target_probs(model, prefix, temperature):
    with torch.no_grad():
        return torch.softmax(model(prefix).logits[0, -1].double() / temperature, -1)


@pytest.mark.task("spec-loop")
def test_sampled_loop_follows_the_target(impl, small_pair, sampled_runs):
    # exact joint law of the first two tokens by brute force (36 outcomes), and of the third given the first two
    target, _ = small_pair
    prompt = torch.tensor([[1, 4, 2]])
    p1 = exact_target_probs(target, prompt, TEMP)
    joint = torch.stack([p1[a] * exact_target_probs(target, torch.tensor([[1, 4, 2, a]]), TEMP) for a in range(6)])
    counts = torch.zeros(6, 6)
    for run in sampled_runs:
        assert run.tokens.size(1) == 6, f"expected 3 new tokens, got {run.tokens.size(1) - 3}"
        a, b = run.tokens[0, 3:5].tolist()
        counts[a, b] += 1
    pv = chi_square_p_value(counts.flatten(), joint.flatten())
    assert pv > 1e-3, f"the first two sampled tokens do not follow the target (chi-square p = {pv:.2e})"
    # third token pooled over the most frequent 2-token prefix: needs the caches right after a rollback
    (a, b) = divmod(int(counts.flatten().argmax()), 6)
    third = torch.zeros(6)
    for run in sampled_runs:
        if run.tokens[0, 3:5].tolist() == [a, b]:
            third[run.tokens[0, 5]] += 1
    p3 = exact_target_probs(target, torch.tensor([[1, 4, 2, a, b]]), TEMP)
    pv3 = chi_square_p_value(third, p3)
    assert pv3 > 1e-3, f"the third token after prefix {[a, b]} does not follow the target (chi-square p = {pv3:.2e})"


@pytest.mark.task("spec-loop")
def test_measured_acceptance_matches_alpha(small_pair, sampled_runs):
    # first iteration: k = min(2, 3 - 1) = 2 drafts; d_1 is accepted with probability sum min(p, q) at the prompt
    target, draft = small_pair
    prompt = torch.tensor([[1, 4, 2]])
    alpha = float(torch.minimum(exact_target_probs(target, prompt, TEMP), exact_target_probs(draft, prompt, TEMP)).sum())
    assert all(run.drafted[0] == 2 for run in sampled_runs), "the first iteration should draft k = 2 tokens"
    rate = sum(run.accepted[0] >= 1 for run in sampled_runs) / len(sampled_runs)
    sigma = math.sqrt(alpha * (1 - alpha) / len(sampled_runs))
    assert abs(rate - alpha) < 5 * sigma, f"first-draft acceptance should be alpha = sum min(p, q) = {alpha:.3f}, " \
                                          f"measured {rate:.3f}"


@pytest.mark.task("spec-loop")
def test_bad_arguments_are_refused(impl, models):
    target, draft = models
    assert impl.speculative_generate(target, draft, torch.tensor([[1, 2]]), 2, 2).tokens.size(1) == 4
    with pytest.raises(ValueError):
        impl.speculative_generate(target, draft, torch.tensor([[1, 2], [3, 4]]), 4, 2)
    with pytest.raises(ValueError):
        impl.speculative_generate(target, tiny_llama(3, vocab=9), torch.tensor([[1, 2]]), 4, 2)


# --------------------------------------------------------------------------- speedup-math

@pytest.mark.task("speedup-math")
def test_acceptance_rate_is_one_minus_total_variation(impl):
    assert abs(float(impl.acceptance_rate(P[0], Q[0])) - 0.35) < 1e-6, "sum min(p, q) for the first rows is 0.35"
    got = impl.acceptance_rate(P[:3], Q)
    tv = 0.5 * (P[:3] - Q).abs().sum(-1)
    assert torch.allclose(got, 1 - tv), f"alpha must equal 1 - TV(p, q) row by row: {got.tolist()} vs {(1 - tv).tolist()}"


@pytest.mark.task("speedup-math")
def test_expected_tokens(impl):
    assert impl.expected_tokens_per_iteration(0.5, 1) == pytest.approx(1.5)
    assert impl.expected_tokens_per_iteration(0.0, 7) == pytest.approx(1.0), "alpha = 0: only the target's token"
    assert impl.expected_tokens_per_iteration(1.0, 4) == pytest.approx(5.0), "alpha = 1: k + 1 tokens"
    assert impl.expected_tokens_per_iteration(0.8, 0) == pytest.approx(1.0), "k = 0 is plain decoding"
    for alpha in (0.3, 0.81, 0.999999):
        for k in (1, 2, 5, 8):
            brute = sum(alpha ** i for i in range(k + 1))
            assert impl.expected_tokens_per_iteration(alpha, k) == pytest.approx(brute, rel=1e-6), (alpha, k)
    with pytest.raises(ValueError):
        impl.expected_tokens_per_iteration(1.2, 3)


@pytest.mark.task("speedup-math")
def test_expected_tokens_by_simulation(impl):
    gen = torch.Generator().manual_seed(0)
    alpha, k, n = 0.7, 4, 200_000
    ok = torch.rand(n, k, generator=gen) < alpha
    m = torch.where(ok.all(1), torch.full((n,), k), (~ok).int().argmax(1))
    mean = float((m + 1).double().mean())
    assert abs(mean - impl.expected_tokens_per_iteration(alpha, k)) < 0.01, "formula disagrees with a simulation"


@pytest.mark.task("speedup-math")
def test_expected_speedup(impl):
    # (1 - 0.81^5) / (0.19 * 1.4) = 2.4486..., c = 0.1, k = 4
    assert impl.expected_speedup(0.81, 4, 0.1) == pytest.approx((1 - 0.81 ** 5) / (0.19 * 1.4), rel=1e-9)
    assert impl.expected_speedup(0.81, 4, 0.1) == pytest.approx(2.4486, abs=1e-3)
    assert impl.expected_speedup(1.0, 3, 0.0) == pytest.approx(4.0)
    assert impl.expected_speedup(0.0, 3, 0.5) == pytest.approx(1 / 2.5), "a useless draft slows decoding down"
    with pytest.raises(ValueError):
        impl.expected_speedup(0.5, 2, -0.1)


@pytest.mark.task("speedup-math")
def test_best_k(impl):
    assert impl.best_k(0.0, 0.1) == (0, pytest.approx(1.0)), "no acceptance: do not speculate"
    k, s = impl.best_k(0.8, 0.1, k_max=16)
    brute = max(range(17), key=lambda j: (sum(0.8 ** i for i in range(j + 1)) / (1 + 0.1 * j), -j))
    assert k == brute == 6, f"alpha 0.8, c 0.1: expected k = 6, got {k}"
    assert s == pytest.approx(sum(0.8 ** i for i in range(7)) / 1.6)
    # exact tie: alpha = 1, c = 1 makes every k worth (k + 1) / (1 + k) = 1: the smallest k (0) wins
    assert impl.best_k(1.0, 1.0, k_max=5)[0] == 0, "on a tie keep the smaller k"
    assert impl.best_k(1.0, 0.0, k_max=5)[0] == 5, "a free perfect draft: draft as much as allowed"


@pytest.mark.task("speedup-math")
def test_estimate_alpha(impl):
    # iterations (k, m): (4, 4) 4 trials 4 ok; (4, 1) 2 trials 1 ok; (2, 0) 1 trial 0 ok -> 5 / 7
    assert impl.estimate_alpha([4, 4, 2], [4, 1, 0]) == pytest.approx(5 / 7)
    gen = torch.Generator().manual_seed(1)
    ok = torch.rand(50_000, 3, generator=gen) < 0.6
    m = torch.where(ok.all(1), torch.full((50_000,), 3), (~ok).int().argmax(1)).tolist()
    assert abs(impl.estimate_alpha([3] * len(m), m) - 0.6) < 0.01, "the estimate must recover a simulated alpha"
    with pytest.raises(ValueError):
        impl.estimate_alpha([2], [3])
