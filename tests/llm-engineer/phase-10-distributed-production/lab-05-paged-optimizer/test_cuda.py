"""The real CUDA paths (GPU runner only): bitsandbytes' Adam8bit on CUDA against ours on CPU, and PagedAdamW8bit,
whose states live in unified memory outside PyTorch's allocator, against AdamW8bit."""
import pytest
import torch

bnb = pytest.importorskip("bitsandbytes")

pytestmark = pytest.mark.usefixtures("one_thread")


def grads(shape, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) * 1e-2 for _ in range(steps)]


@pytest.mark.gpu
@pytest.mark.task("adam-8bit")
def test_cuda_adam8bit_close_to_ours(impl):
    torch.manual_seed(0)
    start = torch.randn(256, 256) * 0.1
    ours, cuda = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone().cuda())
    opt, opt_cuda = impl.Adam8bit([ours], lr=1e-3), bnb.optim.Adam8bit([cuda], lr=1e-3)
    for g in grads(start.shape, 10):
        ours.grad, cuda.grad = g.clone(), g.clone().cuda()
        opt.step()
        opt_cuda.step()
    gap = (ours - cuda.detach().cpu()).abs()
    assert gap.mean() < 5e-6 and gap.max() < 1e-3, f"CUDA Adam8bit vs ours: mean gap {gap.mean():.3g}, max {gap.max():.3g}"


@pytest.mark.gpu
@pytest.mark.task("adam-8bit")
def test_paged_adamw8bit_keeps_state_out_of_the_allocator_and_matches(impl):
    torch.manual_seed(0)
    start = torch.randn(1024, 1024) * 0.02                               # over 1e5 elements: bnb pages it
    plain, paged = torch.nn.Parameter(start.clone().cuda()), torch.nn.Parameter(start.clone().cuda())
    opt_plain = bnb.optim.AdamW8bit([plain], lr=1e-3)
    opt_paged = bnb.optim.PagedAdamW8bit([paged], lr=1e-3)
    for i, g in enumerate(grads(start.shape, 5)):
        plain.grad = g.cuda()
        opt_plain.step()
        paged.grad = g.cuda()
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        opt_paged.step()
        if i == 0:
            grown = torch.cuda.memory_allocated() - before
            assert grown < 1 << 20, f"paged states should not come from PyTorch's allocator, it grew by {grown} bytes"
    torch.cuda.synchronize()
    assert getattr(opt_paged.state[paged]["state1"], "is_paged", False), "PagedAdamW8bit's state1 should be paged"
    assert torch.equal(plain, paged), "paging moves memory, not numbers: PagedAdamW8bit must equal AdamW8bit"
    ours = torch.nn.Parameter(start.clone())
    opt = impl.Adam8bit([ours], lr=1e-3, weight_decay=1e-2)
    for g in grads(start.shape, 5):
        ours.grad = g
        opt.step()
    gap = (ours - paged.detach().cpu()).abs()
    assert gap.mean() < 5e-6, f"PagedAdamW8bit vs our AdamW-mode Adam8bit: mean gap {gap.mean():.3g}"
