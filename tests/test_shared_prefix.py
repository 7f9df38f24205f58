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
    assert list(lay.spans()) == [(0, 2, 3), (0, 5, 1), (1, 4, 2)]  # (row, start, length) per completion


LAYOUTS = {  # (prompt lengths, completion lengths per row, heads, kv heads)
    "one_row": ([7], [[3, 3, 3]], 2, 2),
    "grouped_query": ([5, 3], [[2, 4, 1], [6]], 4, 2),
    "uneven_rows": ([4, 9, 2], [[1], [2, 5], [3, 3, 3, 1]], 6, 2),
    "single_completions": ([6, 2], [[5], [1]], 3, 1),
}


def _heads(gen, rows, heads, length, strided):
    """(R, h, L, 8) float64 leaf; strided: laid out (R, L, h, 8) in memory, as the model's attention passes it."""
    if not strided:
        return torch.randn(rows, heads, length, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    x = torch.randn(rows, length, heads, 8, generator=gen, dtype=torch.float64)
    return x.transpose(1, 2).detach().requires_grad_(True)


@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_kernel_equals_the_dense_mask_in_float64(name, strided):
    plen, clens, heads, kv_heads = LAYOUTS[name]
    length = max(p + sum(c) for p, c in zip(plen, clens)) + 2  # and some padding
    gen = torch.Generator().manual_seed(0)
    x = lambda h: _heads(gen, len(plen), h, length, strided)  # noqa: E731
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


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_cuda_kernels_equal_the_dense_mask(dtype, tol):
    """FlashAttention (bf16) and memory-efficient attention (fp32) with their log-sum-exps, against the float64
    dense reference of the same inputs."""
    plen, clens, heads, kv_heads = [40, 9], [[33, 20, 7], [64]], 8, 2
    length = max(p + sum(c) for p, c in zip(plen, clens)) + 5
    gen = torch.Generator().manual_seed(3)
    x = lambda h: torch.randn(2, h, length, 64, generator=gen, dtype=torch.float64)  # noqa: E731
    q, k, v = x(heads), x(kv_heads), x(kv_heads)
    seg = segments(plen, clens, length)
    real = seg >= 0
    w = torch.randn(2, length, heads, 64, generator=gen, dtype=torch.float64) * real[:, :, None, None]
    ins = [t.to("cuda", dtype).requires_grad_() for t in (q, k, v)]
    got = sp.shared_prefix_attention(*ins, sp.layout_of(plen, clens, length).to("cuda"), 0.125)
    grads = torch.autograd.grad((got * w.to("cuda", dtype)).sum(), ins)
    ref = [t.clone().requires_grad_() for t in (q, k, v)]
    want = dense_reference(*ref, seg, 0.125)
    want_grads = torch.autograd.grad((want * w).sum(), ref)
    rel = lambda a, b: float((a.double().cpu() - b).norm() / b.norm())  # noqa: E731
    assert rel(got.detach()[real.cuda()], want.detach()[real]) < tol
    for g, h in zip(grads, want_grads):
        assert rel(g, h) < tol


def test_fallback_equals_the_fused_cpu_kernel():
    gen = torch.Generator().manual_seed(1)
    q, k, v, do = (torch.randn(2, 3, 9, 4, generator=gen, dtype=torch.float64) for _ in range(4))
    for causal in (True, False):
        out, lse, extra = sp._attend(q, k, v, causal, 0.5)
        out2, lse2 = sp._math_attend(q, k, v, causal, 0.5)
        assert torch.allclose(out, out2, atol=1e-12) and torch.allclose(lse, lse2, atol=1e-12)
        fused = sp._attend_backward(do, q, k, v, out, lse, extra)
        math = sp._math_attend_backward(do, q, k, v, out, lse, causal, 0.5)
        for a, b in zip(fused, math):
            assert torch.allclose(a, b, atol=1e-12)


def test_float64_gradcheck_of_the_whole_function():
    lay = sp.layout_of([3, 2], [[2, 1], [2]], 6)
    gen = torch.Generator().manual_seed(2)
    q = torch.randn(2, 2, 6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    k, v = (torch.randn(2, 1, 6, 4, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(lambda a, b, c: sp.shared_prefix_attention(a, b, c, lay, 0.7), (q, k, v))


# ---------------------------------------------------------------------------------------------------- cost estimate
def test_unit_costs_by_hand():
    from sapo_vl.models.archs import Arch, VisionArch

    vision = VisionArch(depth=1, hidden_size=4, intermediate_size=8, out_hidden_size=8, patch_size=2,
                        temporal_patch_size=1, spatial_merge_size=1, in_channels=1)
    arch = Arch(name="hand", num_layers=2, hidden_size=8, intermediate_size=16, num_heads=2, num_kv_heads=1,
                head_dim=4, vocab_size=10, tie_word_embeddings=True, vision=vision)
    unit = sp.UnitCosts.of(arch)
    # per layer: q,k,v,o = 2·8·(2+1)·4 = 192 MACs, MLP 3·8·16 = 384 MACs; 2 FLOPs per MAC, 2 layers: 4·576
    assert unit.token == 2304
    assert unit.pair == 4 * 2 * 2 * 4  # layers × heads × head_dim × (QKᵀ + PV) × 2
    # patch embedding 1·1·2²·4 = 16, one block 4·4² + 2·4·8 = 128, merger (4·1)·(4·1 + 8) / 1 = 48; × 2 FLOPs
    assert unit.patch == 2 * (16 + 128 + 48)
    assert unit.patch_pair == 4 * 1 * 4


def test_path_costs_by_hand():
    unit = sp.UnitCosts(token=10, pair=1, patch=100, patch_pair=0.5)
    # one prompt of 4 tokens and one 4-patch image; its completions of 2 and 3 tokens packed in one row
    packed, row = sp.path_costs([(0, (0, 1))], [4], [2, 3], [[4]], unit)
    # packed: 1 row × 9 tokens = 90; pairs 4²/2 + (2·4 + 3·4) + (2² + 3²)/2 = 8 + 20 + 6.5 = 34.5; image once
    # 4·100 + 16·0.5
    assert packed == 90 + 34.5 + 408
    # row: 2 rows × (4 + 3) = 14 tokens = 140; padded (2 ≠ 3), so 2 · 7² = 98 pairs; the image twice
    assert row == 140 + 98 + 2 * 408
    assert sp.prefer_packed([(0, (0, 1))], [4], [2, 3], [[4]], unit)
    # text only, 1-token prompts, five 4-token completions: one row of 4, one row of 1 (the batch pads to 17)
    batch, plen, clen, none = [(0, (0, 1, 2, 3)), (1, (4,))], [1, 1], [4] * 5, [[], []]
    packed, row = sp.path_costs(batch, plen, clen, none, unit)
    assert packed == 10 * 2 * 17 + (2 * 1 / 2 + 5 * 4 * 1 + 5 * 4**2 / 2)  # 340 + 61
    assert row == 10 * 5 * 5 + 5 * 5**2 / 2  # no padding: 250 + 62.5
    assert not sp.prefer_packed(batch, plen, clen, none, unit)  # row is cheaper and 5 × 5 tokens fit
    assert sp.prefer_packed(batch, plen, clen, none, unit, token_budget=20)  # ... but not within 20 tokens
