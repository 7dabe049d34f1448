"""The Triton kernels against torch, through Triton's interpreter on CPU (compiled on a GPU).

Inputs and outputs sit inside larger buffers ("guard bands"): input padding holds NaN, so a load that ignores
its mask poisons the result; output padding holds a sentinel, so a store past the edge is seen (and lands in
memory the test owns instead of corrupting the process). Sizes are odd on purpose: not multiples of any block.

fp32 tolerances: the interpreter computes in NumPy float32, so each output is a few roundings away from torch's:
elementwise ops and row reductions agree to ~1e-7 relative; dot products of length K differ by about
sqrt(K) * 6e-8 * |terms| (measured at most 8e-6 for K = 70). On a GPU, tl.dot on fp32 uses TF32 (10-bit
mantissa, ~5e-4 relative per product), so the dot-based checks widen there.
"""
import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.usefixtures("one_thread")

SENTINEL = -12345.0


def guarded(data: torch.Tensor, pad: int = 64) -> torch.Tensor:
    """A copy of data (1-D or 2-D) as a view into a bigger NaN-filled buffer; the view's strides are the buffer's."""
    if data.dim() == 1:
        buf = torch.full((data.shape[0] + pad,), float("nan"), dtype=data.dtype, device=data.device)
        view = buf[:data.shape[0]]
    else:
        buf = torch.full((data.shape[0] + 2, data.shape[1] + pad), float("nan"), dtype=data.dtype, device=data.device)
        view = buf[1:1 + data.shape[0], :data.shape[1]]
    view.copy_(data)
    return view


def out_buffer(shape, dev, pad: int = 64, dtype=torch.float32):
    """(view, buffer): an output view inside a sentinel-filled buffer, to check nothing is written outside it."""
    if len(shape) == 1:
        buf = torch.full((shape[0] + pad,), SENTINEL, dtype=dtype, device=dev)
        return buf[:shape[0]], buf
    buf = torch.full((shape[0] + 2, shape[1] + pad), SENTINEL, dtype=dtype, device=dev)
    return buf[1:1 + shape[0], :shape[1]], buf


def assert_only_view_written(view, buf):
    outside = torch.ones_like(buf, dtype=torch.bool)
    if buf.dim() == 1:
        outside[:view.shape[0]] = False
    else:
        outside[1:1 + view.shape[0], :view.shape[1]] = False
    bad = (buf[outside] != SENTINEL).sum().item()
    assert bad == 0, f"{bad} values were written outside the output tensor: a store is missing its mask"


def dot_tol(dev):
    return dict(rtol=1e-4, atol=1e-4) if dev.type == "cpu" else dict(rtol=2e-2, atol=2e-2)


# ------------------------------------------------------------------------------------------ vector-add

@pytest.mark.task("vector-add")
@pytest.mark.parametrize("n", [1, 15, 16, 17, 100, 1000])
def test_vector_add_matches_torch_at_every_tail(kernels, dev, n):
    x, y = torch.randn(n, device=dev), torch.randn(n, device=dev)
    out, buf = out_buffer((n,), dev)
    got = kernels.vector_add(guarded(x), guarded(y), out=out, block=16)
    assert got.data_ptr() == out.data_ptr(), "vector_add should write into `out` when one is given"
    torch.testing.assert_close(out, x + y, rtol=0, atol=0)  # one fp32 add: bit-identical
    assert_only_view_written(out, buf)


@pytest.mark.task("vector-add")
def test_vector_add_allocates_and_handles_several_programs(kernels, dev):
    for seed, n in [(0, 1025), (1, 4096), (2, 3)]:
        torch.manual_seed(seed)
        x, y = torch.randn(n, device=dev), torch.randn(n, device=dev)
        got = kernels.vector_add(x, y, block=256)
        assert got.shape == (n,), f"expected shape ({n},), got {tuple(got.shape)}"
        torch.testing.assert_close(got, x + y, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------ softmax

@pytest.mark.task("softmax")
@pytest.mark.parametrize("n_cols", [1, 5, 33, 100, 128])
def test_softmax_matches_torch_on_odd_widths(kernels, dev, n_cols):
    for seed in (0, 1):
        torch.manual_seed(seed)
        x = torch.randn(3, n_cols, device=dev) * 3
        out, buf = out_buffer((3, n_cols), dev)
        kernels.softmax(guarded(x), out=out)
        torch.testing.assert_close(out, torch.softmax(x, dim=1), rtol=1e-5, atol=1e-6)
        assert_only_view_written(out, buf)


@pytest.mark.task("softmax")
def test_softmax_of_large_logits_does_not_overflow(kernels, dev):
    # exp(1000) overflows fp32 (max ~3.4e38 = e^88.7): only the max-subtracted form stays finite
    x = torch.stack([torch.linspace(900, 1000, 21), torch.linspace(-50, 60, 21)]).to(dev)
    got = kernels.softmax(x)
    assert torch.isfinite(got).all(), "softmax overflowed on logits near 1000: subtract the row max first"
    torch.testing.assert_close(got, torch.softmax(x, dim=1), rtol=1e-5, atol=1e-6)


@pytest.mark.task("softmax")
def test_softmax_rows_sum_to_one_many_rows(kernels, dev):
    x = torch.randn(40, 20, device=dev)
    got = kernels.softmax(x)
    torch.testing.assert_close(got.sum(dim=1), torch.ones(40, device=dev), rtol=0, atol=1e-5)
    torch.testing.assert_close(got, torch.softmax(x, dim=1), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------ matmul

@pytest.mark.task("matmul")
@pytest.mark.parametrize("m,k,n", [(16, 16, 16), (45, 70, 37), (1, 33, 1), (50, 17, 64)])
def test_matmul_matches_torch_on_odd_shapes(kernels, dev, m, k, n):
    for seed in (0, 1):
        torch.manual_seed(seed)
        a, b = torch.randn(m, k, device=dev), torch.randn(k, n, device=dev)
        out, buf = out_buffer((m, n), dev)
        kernels.matmul(guarded(a), guarded(b), out=out, block_m=16, block_n=16, block_k=16)
        torch.testing.assert_close(out, a @ b, **dot_tol(dev))
        assert_only_view_written(out, buf)


@pytest.mark.task("matmul")
def test_matmul_reads_through_strides_of_transposed_views(kernels, dev):
    a_t, b_t = torch.randn(40, 24, device=dev), torch.randn(19, 40, device=dev)   # a = a_t.T is (24, 40)
    got = kernels.matmul(a_t.T, b_t.T, block_m=16, block_n=16, block_k=16)       # (24, 40) @ (40, 19)
    torch.testing.assert_close(got, a_t.T @ b_t.T, **dot_tol(dev))


@pytest.mark.task("matmul")
def test_matmul_accumulates_long_k_in_fp32(kernels, dev):
    # K = 4096 products of 1 x 1: fp16 stops counting at 2048 (its spacing there is 2), fp32 reaches 4096,
    # which fp16 stores exactly
    a = torch.ones(16, 4096, dtype=torch.float16, device=dev)
    b = torch.ones(4096, 16, dtype=torch.float16, device=dev)
    got = kernels.matmul(a, b, block_m=16, block_n=16, block_k=256)
    assert got.dtype == torch.float16, f"the output should keep the inputs' dtype, got {got.dtype}"
    assert (got == 4096).all(), f"expected 4096 everywhere (fp32 accumulation), got {got.unique().tolist()}"


# ------------------------------------------------------------------------------------------ layernorm

@pytest.mark.task("layernorm")
@pytest.mark.parametrize("n_cols", [5, 77, 128])
def test_layernorm_matches_torch(kernels, dev, n_cols):
    for seed in (0, 1):
        torch.manual_seed(seed)
        x = torch.randn(6, n_cols, device=dev) * 2 + 3
        w, b = torch.randn(n_cols, device=dev), torch.randn(n_cols, device=dev)
        out, buf = out_buffer((6, n_cols), dev)
        y, mean, rstd = kernels.layer_norm(guarded(x), w, b, eps=1e-5, out=out)
        torch.testing.assert_close(y, F.layer_norm(x, (n_cols,), w, b, eps=1e-5), rtol=1e-5, atol=1e-5)
        var, mu = torch.var_mean(x, dim=1, unbiased=False)
        torch.testing.assert_close(mean, mu, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rstd, 1 / torch.sqrt(var + 1e-5), rtol=1e-5, atol=1e-6)
        assert_only_view_written(out, buf)


@pytest.mark.task("layernorm")
def test_layernorm_eps_goes_inside_the_square_root(kernels, dev):
    # rows with variance ~1e-4 and a large eps: 1/sqrt(var + eps) and 1/(sqrt(var) + eps) differ by ~3x here (3.2 vs 9.1)
    x = (torch.randn(4, 9) * 1e-2).to(dev)
    w, b = torch.ones(9, device=dev), torch.zeros(9, device=dev)
    y, _, rstd = kernels.layer_norm(x, w, b, eps=0.1)
    torch.testing.assert_close(y, F.layer_norm(x, (9,), w, b, eps=0.1), rtol=1e-5, atol=1e-6)


@pytest.mark.task("layernorm")
def test_layernorm_of_a_constant_row_is_the_bias(kernels, dev):
    x = torch.full((2, 13), 7.0, device=dev)
    w, b = torch.randn(13, device=dev), torch.randn(13, device=dev)
    y, mean, rstd = kernels.layer_norm(x, w, b, eps=1e-5)
    torch.testing.assert_close(y, b.expand(2, 13), rtol=0, atol=1e-6)
    torch.testing.assert_close(mean, torch.full((2,), 7.0, device=dev))


# ------------------------------------------------------------------------------------------ flash-attention

def qkv(dev, b, h, lq, lk, d, seed, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, lq, d, generator=g) * spread
    k = torch.randn(b, h, lk, d, generator=g) * spread
    v = torch.randn(b, h, lk, d, generator=g)
    return q.to(dev), k.to(dev), v.to(dev)


@pytest.mark.task("flash-attention")
@pytest.mark.parametrize("causal", [False, True])
def test_flash_attention_matches_sdpa(kernels, dev, causal):
    for seed in (0, 1):
        q, k, v = qkv(dev, 2, 2, 37, 37, 24, seed)
        got = kernels.flash_attention(q, k, v, causal=causal, block_m=16, block_n=16)
        torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v, is_causal=causal), **dot_tol(dev))


@pytest.mark.task("flash-attention")
@pytest.mark.parametrize("causal", [False, True])
def test_flash_attention_fewer_queries_than_keys(kernels, dev, causal):
    # Lq != Lk: SDPA's causal mask is top-left aligned (query i sees keys 0..i)
    q, k, v = qkv(dev, 1, 3, 20, 45, 8, seed=3)
    got = kernels.flash_attention(q, k, v, causal=causal, block_m=16, block_n=16)
    torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v, is_causal=causal), **dot_tol(dev))


@pytest.mark.task("flash-attention")
def test_flash_attention_scale_and_peaked_scores(kernels, dev):
    # large scores (|s| ~ 100): only the max-subtracted online softmax stays finite; an explicit scale is honoured
    q, k, v = qkv(dev, 1, 1, 33, 33, 16, seed=4, spread=3.0)
    got = kernels.flash_attention(q, k, v)
    assert torch.isfinite(got).all(), "attention with large scores gave inf/nan"
    torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v), **dot_tol(dev))
    got = kernels.flash_attention(q, k, v, scale=0.05, block_m=16, block_n=16)
    torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v, scale=0.05), **dot_tol(dev))


@pytest.mark.task("flash-attention")
def test_flash_attention_single_query_and_tiny_head(kernels, dev):
    q, k, v = qkv(dev, 1, 2, 1, 19, 4, seed=5)
    got = kernels.flash_attention(q, k, v, causal=False, block_m=16, block_n=16)
    torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v), **dot_tol(dev))


# ------------------------------------------------------------------------------------------ bad input (not graded)

def test_bad_inputs_get_one_line_errors(kernels, dev):
    x = torch.randn(10, device=dev)
    with pytest.raises(ValueError, match="1-D"):
        kernels.vector_add(x, torch.randn(11, device=dev))
    with pytest.raises(ValueError, match="float32/float16/bfloat16"):
        kernels.softmax(torch.ones(2, 3, dtype=torch.int64, device=dev))
    with pytest.raises(ValueError, match=r"\(M, K\) @ \(K, N\)"):
        kernels.matmul(torch.randn(3, 4, device=dev), torch.randn(5, 6, device=dev))
    with pytest.raises(ValueError, match="power of two"):
        kernels.matmul(torch.randn(3, 4, device=dev), torch.randn(4, 6, device=dev), block_k=24)
    with pytest.raises(ValueError, match="eps"):
        kernels.layer_norm(torch.randn(2, 3, device=dev), torch.ones(3, device=dev), torch.zeros(3, device=dev), eps=0)
    with pytest.raises(ValueError, match="out must be"):
        kernels.softmax(torch.randn(2, 3, device=dev), out=torch.empty(3, 2, device=dev))
    with pytest.raises(ValueError, match="contiguous"):
        kernels.softmax(torch.randn(4, 3, device=dev).T)
    with pytest.raises(ValueError, match="causal"):
        q = torch.randn(1, 1, 5, 4, device=dev)
        kernels.flash_attention(q, q[:, :, :3], q[:, :, :3], causal=True)
