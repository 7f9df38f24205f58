"""The shared-prefix attention kernel (`sapo_vl.shared_prefix`): its layout, exactness against the dense
shared-prefix mask (float64, outputs and gradients), the explicit-softmax fallback, the routing into the model's
attention layers, and the packed-vs-row cost estimate by hand. The model-level equality with the row path is in
`tests/test_packing.py`."""
import pytest
import torch

from sapo_vl import shared_prefix as sp
from sapo_vl.packing import shared_prefix_mask


def segments(prompt_len, completion_lens, length):
    """(R, L) segment ids of packed rows (0 prompt, k completion k, −1 padding), as `packing.packed_batch` makes."""
    seg = torch.full((len(prompt_len), length), -1)
    for r, (p, cs) in enumerate(zip(prompt_len, completion_lens)):
        seg[r, :p], s = 0, p
        for k, c in enumerate(cs, start=1):
            seg[r, s : s + c], s = k, s + c
    return seg


def dense_reference(q, k, v, seg, scale):
    """Explicit softmax under the dense (R, 1, L, L) mask; repeat_kv for grouped-query heads → (R, L, H, D)."""
    n_rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(n_rep, 1), v.repeat_interleave(n_rep, 1)
    s = (q @ k.transpose(-1, -2) * scale).masked_fill(~shared_prefix_mask(seg), float("-inf"))
    return (torch.softmax(s, -1) @ v).transpose(1, 2)


def test_layout_by_hand():
    # row 0: prompt 2, completions 3 and 1, padding to 8; row 1: prompt 4, completion 2
    lay = sp.layout_of([2, 4], [[3, 1], [2]], 8)
    assert lay.row_end == [6, 6]
    assert lay.comp_index.tolist() == [[2, 3, 4], [5, 5, 5], [12, 13, 13]]  # flat: row 1 starts at 8
    assert lay.comp_valid.tolist() == [[True] * 3, [True, False, False], [True, True, False]]
    assert lay.prompt_index.tolist() == [0, 1, 8, 9, 10, 11]
    assert lay.token_index.tolist() == [2, 3, 4, 5, 12, 13]


LAYOUTS = {  # (prompt lengths, completion lengths per row, heads, kv heads)
    "one_row": ([7], [[3, 3, 3]], 2, 2),
    "grouped_query": ([5, 3], [[2, 4, 1], [6]], 4, 2),
    "uneven_rows": ([4, 9, 2], [[1], [2, 5], [3, 3, 3, 1]], 6, 2),
    "single_completions": ([6, 2], [[5], [1]], 3, 1),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_kernel_equals_the_dense_mask_in_float64(name):
    plen, clens, heads, kv_heads = LAYOUTS[name]
    length = max(p + sum(c) for p, c in zip(plen, clens)) + 2  # and some padding
    gen = torch.Generator().manual_seed(0)
    x = lambda h: torch.randn(len(plen), h, length, 8, generator=gen, dtype=torch.float64, requires_grad=True)  # noqa: E731
    q, k, v = x(heads), x(kv_heads), x(kv_heads)
    seg = segments(plen, clens, length)
    real = seg >= 0  # (R, L)
    w = torch.randn(len(plen), length, heads, 8, generator=gen, dtype=torch.float64) * real[:, :, None, None]
    got = sp.shared_prefix_attention(q, k, v, sp.layout_of(plen, clens, length), 0.3)
    grads = torch.autograd.grad((got * w).sum(), (q, k, v))
    want = dense_reference(q, k, v, seg, 0.3)
    want_grads = torch.autograd.grad((want * w).sum(), (q, k, v))
    rel = lambda a, b: float((a - b).detach().norm() / b.detach().norm())  # noqa: E731
    assert rel(got[real], want[real]) < 1e-12
    assert torch.equal(got[~real], torch.zeros_like(got[~real]))  # padding gets zeros
    for g, h in zip(grads, want_grads):
        assert rel(g, h) < 1e-12


def test_fallback_equals_the_fused_cpu_kernel():
    gen = torch.Generator().manual_seed(1)
    q, k, v, do = (torch.randn(2, 3, 9, 4, generator=gen, dtype=torch.float64) for _ in range(4))
    for causal in (True, False):
        out, lse, extra = sp._attend(q, k, v, causal, 0.5)
        out2, lse2 = sp._math_attend(q, k, v, causal, 0.5)
        assert torch.allclose(out, out2, atol=1e-12) and torch.allclose(lse, lse2, atol=1e-12)
        fused = sp._attend_backward(do, q, k, v, out, lse, causal, 0.5, extra)
        math = sp._math_attend_backward(do, q, k, v, out, lse, causal, 0.5)
        for a, b in zip(fused, math):
            assert torch.allclose(a, b, atol=1e-12)


def test_float64_gradcheck_of_the_whole_function():
    lay = sp.layout_of([3, 2], [[2, 1], [2]], 6)
    gen = torch.Generator().manual_seed(2)
    q = torch.randn(2, 2, 6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    k, v = (torch.randn(2, 1, 6, 4, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(lambda a, b, c: sp.shared_prefix_attention(a, b, c, lay, 0.7), (q, k, v))
