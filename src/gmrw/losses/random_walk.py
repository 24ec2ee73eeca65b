"""Contrastive random-walk cycle loss, computed without the N x N x N walk product.

The walk f1 → f2 → f1' has transition ``P = A1 @ A2``, but the loss only needs the entry of
each row at its target cell ℓ(i): ``P[i, ℓ(i)] = Σ_k A1[i, k] · A2[k, ℓ(i)]``. Gathering the
columns of A2 at the labels turns that into an elementwise product and a sum: O(N²) work and
memory instead of the O(N³) matmul (and no dense one-hot label matrix). Accuracy needs the
argmax of whole rows of P, so it does the product, but without gradient, in row chunks (on CPUs
with fast bf16 matmuls mostly in bfloat16, with an exact check of the rows it cannot decide: see
``_screened_hits``), and on a
random subset of rows for large maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gmrw.models.cpu import fast_bf16_matmul

LOG_EPS = 1e-7
MASK_EPS = 1e-5
ACCURACY_MAX_ROWS = 4096
_CHUNK_ELEMENTS = 1 << 24
_BLOCK_ELEMENTS = 1 << 20  # entries per slab or row chunk of N x N work (4 MiB float32; heap-reused)
_SCREEN_MIN_CELLS = 1024  # below this the exact product is a few ms: not worth probing the CPU


def affine_labels(affine_b2f: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the crop affine sends each source cell, at feature resolution.

    affine_b2f (B,2,3), normalised corner-aligned coordinates → ``labels`` (B, h*w) int64
    (row-major target cell, rounded) and ``mask`` (B, h*w) float32 (1 where the cell lands
    inside the other crop: the warped ones-field exceeds 0.5).
    """
    b = affine_b2f.shape[0]
    device = affine_b2f.device
    affine = affine_b2f.float()
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    fields = torch.cat(
        (torch.stack((xs, ys)).float()[None].expand(b, 2, h, w), torch.ones(b, 1, h, w, device=device)),
        dim=1,
    )
    grid = F.affine_grid(affine, [b, 3, h, w], align_corners=True)
    warped = F.grid_sample(fields, grid, mode="bilinear", align_corners=True)
    cell = torch.round(warped[:, :2]).long()
    labels = (cell[:, 1] * w + cell[:, 0]).reshape(b, h * w)
    mask = (warped[:, 2] > 0.5).reshape(b, h * w).float()
    return labels, mask


class _WalkTerms(torch.autograd.Function):
    """``(A1 @ A2)[b, i, ℓ(i)]`` and, optionally, each hop's expected target ``A @ coords``, with
    hand-written gradients that keep nothing new for backward.

    Autograd on a gather-and-multiply form would store the gathered (B, N, N) columns of A2
    (64 MiB at 4096 cells) and build its gradient with a scatter over every element. Here the
    backward re-gathers what it needs from A1 and A2, which the softmax keeps anyway:

    * dP_i / dA1[i, k] = A2[k, ℓ(i)]  → grad_A1[i] = g_i · A2[:, ℓ(i)]ᵀ;
    * dP_i / dA2[k, j] = Σ_{i: ℓ(i)=j} A1[i, k] → column ℓ(i) of grad_A2 gets g_i · A1[i]ᵀ;
    * the targets (the smoothness loss's flows) add grad_target @ coordsᵀ to the same buffers.

    Computing both terms here means one (B, N, N) gradient per hop instead of one per term and
    their sum (128 MiB less at the peak of a 256x256 step). The work runs over slabs of the
    middle cells k: a slab of A2's rows is transposed once, so the columns ℓ(i) become
    contiguous rows to gather, and every pass reads and writes whole rows. (Gathering columns
    of A2 in place and multiplying by their transpose strode 16 KiB between neighbours: forward
    and backward at 4096 cells, targets included, took 0.55 s on one core, 0.26 s this way.) Temporaries stay a few slabs of
    ~4 MiB on the CPU (64 MiB on GPUs), and the gradients come out contiguous.
    """

    @staticmethod
    def forward(ctx, a1, a2, labels, coords):
        ctx.save_for_backward(a1, a2, labels, coords)
        out = a1.new_zeros(labels.shape)
        for s, middle in _middle_slabs(a2):
            columns = a2[s, middle].t().contiguous()  # (N, m): row j holds A2[middle, j]
            gathered = columns.index_select(0, labels[s])  # row i holds A2[middle, ℓ(i)]
            out[s] += gathered.mul_(a1[s, :, middle]).sum(dim=-1)
        if coords is None:
            return out, None, None
        return out, a1 @ coords, a2 @ coords

    @staticmethod
    def backward(ctx, grad, grad_target1, grad_target2):
        a1, a2, labels, coords = ctx.saved_tensors
        grad_a1 = torch.empty_like(a1) if ctx.needs_input_grad[0] else None
        grad_a2 = torch.empty_like(a2) if ctx.needs_input_grad[1] else None
        for s, middle in _middle_slabs(a2):
            g = grad[s].unsqueeze(-1)  # (N, 1)
            if grad_a1 is not None:
                columns = a2[s, middle].t().contiguous()
                torch.mul(columns.index_select(0, labels[s]), g, out=grad_a1[s, :, middle])
            if grad_a2 is not None:
                # row j of the slab's transposed gradient collects g_i · A1[i, middle] for ℓ(i) = j
                slab = a2.new_zeros(a2.shape[-1], middle.stop - middle.start)
                slab.index_add_(0, labels[s], a1[s, :, middle] * g)
                grad_a2[s, middle].copy_(slab.t())
        if grad_a1 is not None and grad_target1 is not None:
            grad_a1.baddbmm_(grad_target1.to(a1.dtype), coords.t().expand(a1.shape[0], -1, -1))
        if grad_a2 is not None and grad_target2 is not None:
            grad_a2.baddbmm_(grad_target2.to(a2.dtype), coords.t().expand(a2.shape[0], -1, -1))
        return grad_a1, grad_a2, None, None


def walk_terms(
    a1: torch.Tensor, a2: torch.Tensor, labels: torch.Tensor, coords: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The walk's probability at the labels, ``(A1 @ A2)[b, i, labels[b, i]]`` (B, N), and with
    ``coords`` (N, 2) each hop's expected target cell ``A @ coords`` (B, N, 2) (else None, None),
    in one autograd node (see :class:`_WalkTerms`). a1, a2 (B, N, N); labels (B, N) int64."""
    return _WalkTerms.apply(a1, a2, labels, coords)


def _middle_slabs(a: torch.Tensor):
    """(sample, slice of rows) pairs covering (B, N, N) ``a`` in slabs of ~1M entries: the middle
    cells k of the walk, which index A2's rows and A1's columns."""
    b, n, m = a.shape
    # GPUs have a caching allocator and pay per kernel launch: there, slabs as large as chunks
    block = _BLOCK_ELEMENTS if a.device.type == "cpu" else _CHUNK_ELEMENTS
    step = max(1, block // m)
    for s in range(b):
        for k in range(0, n, step):
            yield s, slice(k, min(k + step, n))


def walk_probability_at(a1: torch.Tensor, a2: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(A1 @ A2)[b, i, labels[b, i]]`` without the product. a1, a2 (B,N,N); labels (B,N) → (B,N)."""
    return walk_terms(a1, a2, labels)[0]


def masked_nll(at_label: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of -log(P[i, ℓ(i)] + 1e-7) from the walk probabilities at the labels (B, N);
    the denominator is mask.sum() + 1e-5, as the paper's loss."""
    log_p = torch.log(at_label + LOG_EPS)
    return -(log_p * mask).sum() / (mask.sum() + MASK_EPS)


def cycle_loss(a1: torch.Tensor, a2: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of -log(P[i, ℓ(i)] + 1e-7) over rows; denominator mask.sum() + 1e-5."""
    return masked_nll(walk_probability_at(a1, a2, labels), mask)


@torch.no_grad()
def walk_accuracy(
    a1: torch.Tensor,
    a2: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    max_rows: int = ACCURACY_MAX_ROWS,
    seed: int = 0,
    at_label: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """Percent of masked rows whose argmax of ``A1 @ A2`` is the label.

    Exact (every masked row) when N <= ``max_rows``; above that, each sample's masked rows are
    subsampled to ``max_rows`` with a private generator (the global RNG is left alone).
    ``at_label`` (B, N): the walk probabilities at the labels, if already computed.
    Returns (accuracy as a 0-d float32 tensor, number of rows sampled; 0 when exact).
    """
    b, n, _ = a1.shape
    if at_label is None:
        at_label = walk_probability_at(a1, a2, labels)
    subsample = n > max_rows
    generator = torch.Generator().manual_seed(seed) if subsample else None
    hits = torch.zeros((), device=a1.device)
    sampled = 0
    for s in range(b):
        rows = torch.nonzero(mask[s] > 0.5).flatten()
        if subsample and rows.numel() > max_rows:
            pick = torch.randperm(rows.numel(), generator=generator)[:max_rows]
            rows = rows[pick.to(rows.device)]
        weight = 1.0
        if subsample and rows.numel():
            sampled += rows.numel()
            weight = mask[s].sum() / rows.numel()  # scale the estimate to this sample's mask
        count = torch.zeros((), device=a1.device)
        if a1.device.type != "cpu" or n < _SCREEN_MIN_CELLS:
            step = max(1, _CHUNK_ELEMENTS // n)
            for i in range(0, rows.numel(), step):
                idx = rows[i : i + step]
                count += _exact_hits(a1[s, idx], a2[s], labels[s, idx])
            hits = hits + count * weight
            continue
        # CPU, large maps: the full product is most of the accuracy's cost (2N³ FLOPs), so rows
        # are first decided by bounds (_bounded_rows), then by a bf16 product where that is fast
        # (_screened_hits); only the rest get their exact float32 rows. Chunks of 4 MiB.
        top = torch.topk(a2[s], 2, dim=1)
        low: tuple[torch.Tensor, torch.Tensor] | None = None  # bf16 copies, made at first need
        step = max(1, _BLOCK_ELEMENTS // n)
        for i in range(0, rows.numel(), step):
            idx = rows[i : i + step]
            hit, miss = _bounded_rows(a1[s, idx], top.values, top.indices, labels[s, idx], at_label[s, idx])
            count += hit.sum()
            idx = idx[~(hit | miss)]
            if not idx.numel():
                continue
            if low is None and fast_bf16_matmul():
                low = (a1[s].bfloat16(), a2[s].bfloat16())
            if low is not None:
                count += _screened_hits(a1[s], a2[s], *low, idx, labels[s, idx], at_label[s, idx])[0]
            else:
                count += _exact_hits(a1[s, idx], a2[s], labels[s, idx])
        hits = hits + count * weight
    return 100.0 * hits / (mask.sum() + MASK_EPS), sampled


def _exact_hits(a1_rows: torch.Tensor, a2: torch.Tensor, row_labels: torch.Tensor) -> torch.Tensor:
    """How many rows of the float32 product ``a1_rows @ a2`` ((r, N) @ (N, N)) have their argmax
    at their label ``row_labels`` (r,)."""
    return ((a1_rows @ a2).argmax(dim=-1) == row_labels).sum()


def _bounded_rows(
    a1_rows: torch.Tensor,
    top_values: torch.Tensor,
    top_indices: torch.Tensor,
    labels: torch.Tensor,
    at_label: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``A1 @ A2`` whose float32 argmax is certainly at / certainly not at the label, from
    O(N) bounds per row instead of the row's N² product. Returns two (r,) bool masks.

    a1_rows (r, N): rows of A1; top_values, top_indices (N, 2): each row of A2's two largest
    entries and their columns; labels, at_label (r,): each row's label and ``P[i, ℓ(i)]``.
    All entries are non-negative, so for any rival column j ≠ ℓ(i):

    * P[i, j] <= Σ_k A1[i, k] · max_{j' ≠ ℓ(i)} A2[k, j'] (the upper bound: A2's row maximum, or
      its runner-up where the maximum sits at the label). Below P[i, ℓ(i)]: a sure hit.
    * With k* the row's largest entry, the column j* of A2[k*]'s largest entry other than ℓ(i)
      has P[i, j*] >= A1[i, k*] · A2[k*, j*] (the lower bound). Above P[i, ℓ(i)]: a sure miss.

    Both must clear ``tol``, the relative rounding of any float32 sum of N non-negative terms
    (the exact product's, ``at_label``'s and the bound's own), plus a margin for values flushed
    to zero. A confident walk (trained: its mass goes home; untrained: it goes elsewhere with
    certainty) is decided here for almost every row; diffuse rows are left to the product.
    """
    n = a1_rows.shape[-1]
    tol = 5 * (n + 1) * 2.0**-24
    tiny = n * torch.finfo(torch.float32).tiny
    first, second = top_values.unbind(dim=1)
    home = top_indices[:, 0][None, :] == labels[:, None]  # (r, N): A2 row k peaks at the label
    upper = torch.where(home, second, first).mul_(a1_rows).sum(dim=-1)
    peak, k_star = a1_rows.max(dim=-1)
    lower = peak * torch.where(top_indices[k_star, 0] == labels, second[k_star], first[k_star])
    sure_hit = upper + tiny < at_label * (1 - tol)
    sure_miss = lower > at_label * (1 + tol) + tiny
    return sure_hit, sure_miss


def _screened_hits(
    a1: torch.Tensor,
    a2: torch.Tensor,
    a1_low: torch.Tensor,
    a2_low: torch.Tensor,
    rows: torch.Tensor,
    labels: torch.Tensor,
    at_label: torch.Tensor,
) -> tuple[torch.Tensor, int]:
    """How many ``rows`` of ``a1 @ a2`` (N, N) have their argmax at ``labels`` (and how many rows
    needed the exact float32 check); exact, mostly in bf16 (``a1_low``, ``a2_low``: bf16 copies).

    The whole product in float32 is the costliest part of the accuracy (2N³ FLOPs; 0.5 s at 4096
    cells on an AMX machine, 1.1 s on one core of a Xeon without AMX). A bfloat16 product (where it
    is the faster one: this code first said 4-7x on CPUs with bf16 units, not re-measured) decides almost
    every row: all entries are non-negative, so rounding the inputs and the output to 8 bits and
    accumulating in float32 moves each entry by at most ``tol`` of itself. A row whose best rival
    column is below ``at_label · (1 - tol)`` certainly has its argmax at the label; one whose
    rival is above ``at_label · (1 + tol)`` certainly has not. Only the rows in between, if any,
    get their exact float32 row. Only where bf16 matmuls are fast (:func:`fast_bf16_matmul`):
    without AMX, x86 bf16 matmuls can run at half the fp32 speed, and the plain fp32 product wins.
    """
    n = a2.shape[0]
    tol = 1.25 * (3 * 2.0**-9 + n * 2.0**-24)  # inputs and output rounded to bf16; fp32 sums
    approx = a1_low[rows] @ a2_low
    approx.scatter_(1, labels[:, None], float("-inf"))
    rival = approx.max(dim=1).values.float()
    sure_hit = rival < at_label * (1 - tol)
    unsure = ~sure_hit & (rival <= at_label * (1 + tol))
    count, checked = sure_hit.sum(), int(unsure.sum())
    if checked:
        count = count + _exact_hits(a1[rows[unsure]], a2, labels[unsure])
    return count, checked
