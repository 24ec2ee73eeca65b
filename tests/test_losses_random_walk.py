"""The gathered cycle loss equals the dense random-walk form; labels and accuracy behave."""

from __future__ import annotations

import math

import torch

from gmrw.losses.random_walk import (
    affine_labels,
    cycle_loss,
    walk_accuracy,
    walk_probability_at,
)


def random_transitions(b: int, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, b, n, n, generator=g, dtype=torch.float64) * 3
    return logits[0].softmax(-1), logits[1].softmax(-1)


def dense_loss(a1, a2, labels, mask):
    """The textbook form: full walk product and a one-hot label matrix."""
    walk = a1 @ a2
    one_hot = torch.nn.functional.one_hot(labels, walk.shape[-1]).to(walk.dtype)
    log_p = torch.log((walk * one_hot).sum(-1) + 1e-7)
    return -(log_p * mask).sum() / (mask.sum() + 1e-5)


def test_gathered_probability_equals_walk_product_entries():
    a1, a2 = random_transitions(2, 36)
    labels = torch.randint(0, 36, (2, 36))
    expected = torch.gather(a1 @ a2, 2, labels[..., None]).squeeze(-1)
    torch.testing.assert_close(walk_probability_at(a1, a2, labels), expected)


def test_cycle_loss_values_and_gradients_equal_dense_form():
    a1, a2 = random_transitions(2, 49, seed=1)
    labels = torch.randint(0, 49, (2, 49))
    mask = (torch.rand(2, 49, dtype=torch.float64) > 0.3).to(torch.float64)
    inputs = [t.clone().requires_grad_() for t in (a1, a2)]
    dense_inputs = [t.clone().requires_grad_() for t in (a1, a2)]
    ours = cycle_loss(*inputs, labels, mask)
    ref = dense_loss(*dense_inputs, labels, mask)
    torch.testing.assert_close(ours, ref)
    ours.backward()
    ref.backward()
    for mine, theirs in zip(inputs, dense_inputs):
        torch.testing.assert_close(mine.grad, theirs.grad)


def test_accuracy_is_exact_up_to_4096_rows():
    a1, a2 = random_transitions(2, 25, seed=2)
    argmax = (a1 @ a2).argmax(-1)
    labels = argmax.clone()
    labels[:, :10] = (labels[:, :10] + 1) % 25  # 10 wrong rows per sample
    mask = torch.ones(2, 25)
    mask[:, 20:] = 0  # 5 masked-out rows, all correct
    acc, sampled = walk_accuracy(a1.float(), a2.float(), labels, mask)
    assert sampled == 0
    assert math.isclose(acc.item(), 100 * 20 / (40 + 1e-5), rel_tol=1e-6)


def test_accuracy_subsamples_above_max_rows_and_says_so():
    a1, a2 = random_transitions(1, 64, seed=3)
    labels = (a1 @ a2).argmax(-1)
    mask = torch.ones(1, 64)
    acc, sampled = walk_accuracy(a1.float(), a2.float(), labels, mask, max_rows=16)
    assert sampled == 16
    assert math.isclose(acc.item(), 100 * 64 / (64 + 1e-5), rel_tol=1e-6)


def test_identity_affine_labels_every_cell_itself():
    identity = torch.tensor([[[1.0, 0, 0], [0, 1, 0]]])
    labels, mask = affine_labels(identity, 6, 8)
    assert torch.equal(labels, torch.arange(48)[None])
    assert torch.equal(mask, torch.ones(1, 48))


def test_shifted_affine_masks_cells_that_leave_the_crop():
    # x_src = x + 2 cells on an 8-wide grid (normalised step 2/7): the last two columns leave
    shift = torch.tensor([[[1.0, 0, 4 / 7], [0, 1, 0]]])
    labels, mask = affine_labels(shift, 4, 8)
    grid_mask = mask.reshape(4, 8)
    assert torch.equal(grid_mask[:, :6], torch.ones(4, 6))
    assert torch.equal(grid_mask[:, 6:], torch.zeros(4, 2))
    assert torch.equal(labels.reshape(4, 8)[:, :6] % 8, torch.arange(2, 8).expand(4, 6))


def test_screened_accuracy_equals_the_float32_argmax_and_checks_near_ties(monkeypatch):
    """The bf16 screen decides clear rows and sends near-ties to an exact float32 row."""
    import gmrw.losses.random_walk as rw

    g = torch.Generator().manual_seed(4)
    n = 400
    a1 = (torch.randn(1, n, n, generator=g) * 4).softmax(-1)
    a2 = (torch.randn(1, n, n, generator=g) * 4).softmax(-1)
    # near-ties: rows whose two best columns of P differ by ~1e-4 relative, far inside bf16's error
    a2[0, :5] *= 0.1
    a2[0, :5, 0] = 0.45
    a2[0, :5, 1] = 0.45 * (1 + 1e-4)
    a1[0, :50] = 0.0
    a1[0, :50, :5] = 0.2
    exact = (a1 @ a2).argmax(-1)
    labels = exact.clone()
    labels[:, ::3] = (labels[:, ::3] + 7) % n  # every third row wrong
    labels[:, :50:2] = 0  # near-tie rows labelled with the runner-up (column 0 vs 1): misses
    labels[:, 1:50:2] = 1  # ... and with the winner: hits
    mask = torch.ones(1, n)
    expected = (exact == labels).float().sum()
    # walk_accuracy screens only large maps on CPUs with fast bf16 matmuls: force both choices
    for fast in (False, True):
        monkeypatch.setattr(rw, "_SCREEN_MIN_CELLS", 0)
        monkeypatch.setattr(rw, "fast_bf16_matmul", lambda fast=fast: fast)
        acc, _ = walk_accuracy(a1, a2, labels, mask)
        assert math.isclose(acc.item(), 100 * expected.item() / (n + 1e-5), rel_tol=1e-6)
    at_label = (a1 @ a2)[0].gather(1, labels.t()).flatten()
    low = (a1[0].bfloat16(), a2[0].bfloat16())
    hits, checked = rw._screened_hits(a1[0], a2[0], *low, torch.arange(n), labels[0], at_label)
    assert hits.item() == expected.item()
    assert 50 <= checked < n // 2, "near-ties must be checked exactly, clear rows must not"


def test_walk_terms_targets_and_gradients_equal_autograd():
    """The fused node (probability at the labels + each hop's expected target) equals autograd."""
    from gmrw.losses import walk_terms

    a1, a2 = random_transitions(2, 30, seed=5)
    labels = torch.randint(0, 30, (2, 30), generator=torch.Generator().manual_seed(5))
    coords = torch.rand(30, 2, dtype=torch.float64) * 5
    weights = [torch.randn(2, 30, dtype=torch.float64), torch.randn(2, 30, 2, dtype=torch.float64)]
    ours = [t.clone().requires_grad_() for t in (a1, a2)]
    plain = [t.clone().requires_grad_() for t in (a1, a2)]
    p, t1, t2 = walk_terms(*ours, labels, coords)
    expected_p = torch.gather(plain[0] @ plain[1], 2, labels[..., None]).squeeze(-1)
    e1, e2 = plain[0] @ coords, plain[1] @ coords
    torch.testing.assert_close((p, t1, t2), (expected_p, e1, e2))
    ((p * weights[0]).sum() + (t1 * weights[1]).sum() + 3 * t2.sum()).backward()
    ((expected_p * weights[0]).sum() + (e1 * weights[1]).sum() + 3 * e2.sum()).backward()
    for mine, theirs in zip(ours, plain):
        torch.testing.assert_close(mine.grad, theirs.grad)
    assert walk_terms(a1, a2, labels)[1:] == (None, None)


def test_accuracy_bounds_decide_confident_rows_and_never_lie(monkeypatch):
    """The O(N)-per-row bounds decide confident walks (right or wrong) without the product, leave
    diffuse rows to it, and the accuracy equals the float32 argmax of the full product."""
    import gmrw.losses.random_walk as rw

    monkeypatch.setattr(rw, "_SCREEN_MIN_CELLS", 0)
    monkeypatch.setattr(rw, "fast_bf16_matmul", lambda: False)
    n = 256
    g = torch.Generator().manual_seed(6)
    labels = torch.randint(0, n, (1, n), generator=g)
    mask = (torch.rand(1, n, generator=g) > 0.2).float()
    decided = {}
    for sharpness in (0.0, 5.0, 20.0):
        # the first hop peaks at the cell itself, the second at the label: the walk goes home
        b1 = torch.randn(n, n, generator=g)
        b2 = torch.randn(n, n, generator=g)
        b1[torch.arange(n), torch.arange(n)] += sharpness
        b2[torch.arange(n), labels[0]] += sharpness
        a1, a2 = b1.softmax(-1)[None], b2.softmax(-1)[None]
        a2[0, :10] = a2[0, 10:20]  # a few rival rows that copy others' peaks
        at_label = walk_probability_at(a1, a2, labels)
        wins = (a1[0] @ a2[0]).argmax(-1) == labels[0]
        top = torch.topk(a2[0], 2, dim=1)
        hit, miss = rw._bounded_rows(a1[0], top.values, top.indices, labels[0], at_label[0])
        assert not (hit & ~wins).any() and not (miss & wins).any()
        decided[sharpness] = int((hit | miss).sum())
        acc, _ = walk_accuracy(a1, a2, labels, mask, at_label=at_label)
        expected = 100 * (wins.float() * mask[0]).sum() / (mask.sum() + 1e-5)
        assert math.isclose(acc.item(), expected.item(), rel_tol=1e-6)
        # a confidently wrong walk: the second hop peaks one cell off the label
        off = walk_probability_at(a1, a2.roll(1, dims=-1), labels)
        hit, miss = rw._bounded_rows(a1[0], *torch.topk(a2[0].roll(1, -1), 2, dim=1), labels[0], off[0])
        wins = (a1[0] @ a2[0].roll(1, -1)).argmax(-1) == labels[0]
        assert not (hit & ~wins).any() and not (miss & wins).any()
        if sharpness == 20.0:
            assert int(miss.sum()) >= n - 10
    assert decided[0.0] < n // 4, "diffuse rows must go to the product"
    assert decided[20.0] >= n - 10, "confident rows must be decided by the bounds"
