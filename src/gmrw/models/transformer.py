"""Feature transformer: self-attention, then cross-attention + FFN, in (shifted) windows.

Tokens travel through the layers in a *window-major* layout: the tokens of one attention block
after another. Every operation but attention acts on each token alone, so a layer runs entirely
in that layout; switching between the plain and the shifted layout costs one gather per layer,
instead of rolling, splitting and merging q, k, v and the output of every attention (measured:
those copies were ~15 % of a 256x256 training step on the CPU).

Shifted windows. The paper's model (after Swin) rolls the map by half a window and adds -100 to
the attention between pixels of a window that come from different regions of the unrolled map.
Each window of the rolled map is then a set of rectangles (1, 2 or 4 of them) whose pixels only
attend to their own rectangle: a masked term weighs e^-100 relative to the row's other terms,
far below float32's resolution, as long as no masked logit exceeds the row's largest unmasked
one by ~80 (logit gaps in these models are tens at most). So we attend within each rectangle,
batching rectangles of equal size, with no mask at all: the dense (K², L, L) mask would be
256 MiB per layer at 512x512 and 4 GiB at 1024x1024 (TAP-Vid DAVIS upsampled x4).

Attention runs through ``F.scaled_dot_product_attention``, so no score matrix is kept for
backward (the fused CPU/GPU kernels recompute them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from gmrw.models.windows import split_windows


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back, so bf16 activations normalise stably."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


@dataclass(frozen=True)
class WindowLayout:
    """Where each token sits while a layer runs, and which tokens attend to each other.

    ``order[j]`` (int64, length h*w) is the row-major image position of the token in slot ``j``.
    The slots form consecutive ``groups`` of ``(count, length)``: ``count`` blocks of ``length``
    tokens, each block attending only within itself. Inside a group the blocks are interleaved
    (slot ``i * count + m`` is token ``i`` of block ``m``): that is the (batch, length, heads,
    channels) layout the fused attention kernels work in, so handing them the blocks as heads
    needs no copies in either direction.
    """

    order: torch.Tensor
    groups: tuple[tuple[int, int], ...]


def _shift(h: int, w: int, num_splits: int) -> tuple[int, int]:
    """Half a window: how far shifted layers roll the map (towards the top left)."""
    return (h // num_splits) // 2, (w // num_splits) // 2


def window_layout(h: int, w: int, num_splits: int, shifted: bool, device=None) -> WindowLayout:
    """The layout of plain K x K windows, or of the shifted windows' rectangles (module docstring)."""
    index = torch.arange(h * w, device=device).reshape(1, h, w, 1)
    windows = split_windows(index, num_splits, channel_last=True)  # also checks h, w
    window = (h // num_splits, w // num_splits)
    if not shifted or num_splits == 1:
        order = windows.reshape(num_splits * num_splits, -1).t().reshape(-1)
        return WindowLayout(order, ((num_splits * num_splits, window[0] * window[1]),))
    sh, sw = _shift(h, w, num_splits)
    rolled = torch.roll(index[0, :, :, 0], shifts=(-sh, -sw), dims=(0, 1))

    def ranges(size: int, win: int, half: int) -> list[tuple[int, int]]:
        # windows but the last one whole; the last one holds two regions of the unrolled map
        spans = [(i * win, (i + 1) * win) for i in range(num_splits - 1)]
        return spans + [(size - win, size - half), (size - half, size)]

    blocks: dict[int, list[torch.Tensor]] = {}
    for r0, r1 in ranges(h, window[0], sh):
        for c0, c1 in ranges(w, window[1], sw):
            if r1 > r0 and c1 > c0:
                blocks.setdefault((r1 - r0) * (c1 - c0), []).append(rolled[r0:r1, c0:c1].reshape(-1))
    sizes = sorted(blocks, reverse=True)
    order = torch.cat([torch.stack(blocks[size], dim=1).reshape(-1) for size in sizes])
    return WindowLayout(order, tuple((len(blocks[size]), size) for size in sizes))


def window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, groups: tuple[tuple[int, int], ...]
) -> torch.Tensor:
    """Single-head attention within blocks. q, k, v (B, N, C) in a :class:`WindowLayout`'s order,
    ``groups`` its blocks → (B, N, C), same order."""
    b, _, c = q.shape
    sizes = [count * length for count, length in groups]
    # split (not slicing): its backward is one concatenation, where each slice's backward
    # would fill a whole zero tensor of q's size
    parts = zip(groups, q.split(sizes, dim=1), k.split(sizes, dim=1), v.split(sizes, dim=1))
    out = [
        F.scaled_dot_product_attention(*(t.reshape(b, length, count, c).transpose(1, 2) for t in qkv))
        .transpose(1, 2)
        .reshape(b, -1, c)
        for (count, length), *qkv in parts
    ]
    return out[0] if len(out) == 1 else torch.cat(out, dim=1)


_FFN_CHUNK_ELEMENTS = 1 << 22  # hidden activations per inference chunk (16 MiB in float32)
# ... and per chunk of the recomputing training FFN: 4 MiB in float32. Measured on a 256x256 CPU
# step (median of 3): chunks of 16 MiB left the step's peak RSS 160-200 MiB higher than 4 MiB ones
# (heap fragments between the step's long-lived activations), at the same speed.
_FFN_TRAIN_CHUNK_ELEMENTS = 1 << 20
FFN_RECOMPUTE_ELEMENTS = 1 << 24  # hidden activations from which training recomputes them (64 MiB fp32)


def _chunk_rows(hidden_width: int, elements: int = _FFN_CHUNK_ELEMENTS) -> int:
    """Tokens per FFN chunk of ``elements`` hidden activations."""
    return max(1, elements // hidden_width)


def _train_chunk_rows(x: torch.Tensor, hidden_width: int) -> int:
    """Tokens per chunk of the recomputing training FFN: 4 MiB chunks on the CPU; elsewhere the
    whole layer at once (GPUs cache their allocations and pay per kernel launch)."""
    if x.device.type != "cpu":
        return max(1, x.shape[:-1].numel())
    return _chunk_rows(hidden_width, _FFN_TRAIN_CHUNK_ELEMENTS)


class _FeedForward(torch.autograd.Function):
    """``linear(gelu(linear(x, w1)), w2)`` that keeps only its input for backward.

    The FFN's hidden layer is 8x the model's width, so autograd would keep its two largest
    activations, the pre-activation and the GELU output (64 MiB each per layer for a 256x256
    step, 768 MiB over six layers). Recomputing them from the input in backward costs one extra
    matmul per layer (about 4 % of a training step's FLOPs) and keeps memory within half of the
    reference's. Under autocast the matmuls run in the dtype the forward used, and weight
    gradients come back in the weights' dtype, as autocast's own casts would give.

    On the CPU both passes run over chunks of tokens whose hidden layer is 4 MiB. Whole-layer temporaries
    were 64 MiB each, six per layer and step: allocations that large are fresh ``mmap`` pages
    every time (glibc hands blocks over 32 MiB straight back to the kernel), and faulting them in
    took ~1 s of a 256x256 CPU step. Small chunks are reused from the heap, and the step holds
    one chunk at a time instead of one layer.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w1, w2)
        rows = x.reshape(-1, x.shape[-1])
        parts = []
        for part in rows.split(_train_chunk_rows(x, w1.shape[0])):
            hidden = F.linear(part, w1)  # autocast, if on, picks the dtype here
            ctx.compute_dtype = hidden.dtype
            parts.append(F.linear(torch.ops.aten.gelu_(hidden), w2))
        return torch.cat(parts).reshape(*x.shape[:-1], w2.shape[0])

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, w1, w2 = ctx.saved_tensors
        dtype = ctx.compute_dtype
        rows, w1_c, w2_c = x.reshape(-1, x.shape[-1]).to(dtype), w1.to(dtype), w2.to(dtype)
        grad_rows = grad_out.to(dtype).reshape(-1, grad_out.shape[-1])
        grad_x = torch.empty_like(rows)
        # weight gradients summed over chunks in float32, whatever the compute dtype
        grad_w1 = torch.zeros(w1.shape, dtype=torch.float32, device=w1.device)
        grad_w2 = torch.zeros(w2.shape, dtype=torch.float32, device=w2.device)
        step = _train_chunk_rows(x, w1.shape[0])
        for start in range(0, rows.shape[0], step):
            part, grad_part = rows[start : start + step], grad_rows[start : start + step]
            hidden = F.linear(part, w1_c)
            grad_w2 += grad_part.t() @ F.gelu(hidden)
            grad_hidden = torch.ops.aten.gelu_backward(grad_part @ w2_c, hidden)
            del hidden
            grad_w1 += grad_hidden.t() @ part
            torch.mm(grad_hidden, w1_c, out=grad_x[start : start + step])
        return grad_x.reshape(x.shape).to(x.dtype), grad_w1.to(w1.dtype), grad_w2.to(w2.dtype)


def feed_forward(
    x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, recompute: bool | None = None
) -> torch.Tensor:
    """(..., D) → (..., w2.shape[0]): ``linear(gelu(linear(x, w1)), w2)``.

    With gradients, ``recompute`` chooses whether the hidden layer is recomputed in backward
    (:class:`_FeedForward`) or stored by autograd; None decides by size: recompute once the hidden
    layer reaches :data:`FFN_RECOMPUTE_ELEMENTS` (a 256x256 training step; the paper's 512x512
    steps and larger), where it is the largest thing a step stores. Smaller steps keep it, as the
    extra matmul would cost ~10 % of their time for memory nobody needs back.
    """
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, w1, w2)):
        if recompute is None:
            recompute = x.shape[:-1].numel() * w1.shape[0] >= FFN_RECOMPUTE_ELEMENTS
        if recompute:
            return _FeedForward.apply(x, w1, w2)
        return F.linear(F.gelu(F.linear(x, w1)), w2)
    # Inference: a few thousand tokens at a time, so the 8x-wide hidden layer stays small
    # (256 MiB for two 128x128 maps in one go; 16 MiB per chunk).
    rows = x.reshape(-1, x.shape[-1])
    step = _chunk_rows(w1.shape[0])
    out = torch.cat([F.linear(torch.ops.aten.gelu_(F.linear(part, w1)), w2) for part in rows.split(step)])
    return out.reshape(*x.shape[:-1], w2.shape[0])


class TransformerLayer(nn.Module):
    """Attention from ``source`` to ``target`` (self-attention when they are the same),
    optionally followed by an FFN over [source, message]; residual on ``source``."""

    def __init__(self, d_model: int = 128, ffn_dim_expansion: int = 4, no_ffn: bool = False):
        super().__init__()
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.merge = nn.Linear(d_model, d_model, bias=False)
        self.norm1 = LayerNorm32(d_model)
        self.no_ffn = no_ffn
        if not no_ffn:
            hidden = 2 * d_model * ffn_dim_expansion
            self.mlp = nn.Sequential(
                nn.Linear(2 * d_model, hidden, bias=False),
                nn.GELU(),
                nn.Linear(hidden, d_model, bias=False),
            )
            self.norm2 = LayerNorm32(d_model)

    def forward(
        self, source: torch.Tensor, target: torch.Tensor, groups: tuple[tuple[int, int], ...]
    ) -> torch.Tensor:
        """source, target (B, N, C) in a window layout with attention ``groups`` → (B, N, C)."""
        if source is target:  # self-attention: one projection matmul for q, k and v
            weight = torch.cat((self.q_proj.weight, self.k_proj.weight, self.v_proj.weight))
            q, k, v = F.linear(source, weight).chunk(3, dim=-1)
        else:
            q = self.q_proj(source)
            k, v = F.linear(target, torch.cat((self.k_proj.weight, self.v_proj.weight))).chunk(2, dim=-1)
        message = window_attention(q, k, v, groups)
        message = self.norm1(self.merge(message))
        if not self.no_ffn:
            # self.mlp is (Linear, GELU, Linear), kept as modules for the checkpoint key names
            ffn_input = torch.cat([source, message], dim=-1)
            message = self.norm2(feed_forward(ffn_input, self.mlp[0].weight, self.mlp[2].weight))
        return source + message


class TransformerBlock(nn.Module):
    """Self-attention (no FFN), then cross-attention with FFN."""

    def __init__(self, d_model: int, ffn_dim_expansion: int, with_shift: bool) -> None:
        super().__init__()
        self.with_shift = with_shift
        self.self_attn = TransformerLayer(d_model, ffn_dim_expansion, no_ffn=True)
        self.cross_attn_ffn = TransformerLayer(d_model, ffn_dim_expansion)

    def forward(self, source: torch.Tensor, groups: tuple[tuple[int, int], ...]) -> torch.Tensor:
        """source (2B, N, C): both maps of B pairs stacked, [maps 0; maps 1], in this block's
        window order (shifted or not). Cross-attention looks at the *block's input* of the other
        map (as GMFlow), not at its self-attended version."""
        target = torch.cat(source.chunk(2, dim=0)[::-1], dim=0)
        source = self.self_attn(source, source, groups)
        return self.cross_attn_ffn(source, target, groups)


class FeatureTransformer(nn.Module):
    """Jointly refines two feature maps; alternate blocks use shifted windows (swin)."""

    def __init__(
        self,
        num_layers: int = 6,
        d_model: int = 128,
        nhead: int = 1,
        attention_type: str = "swin",
        ffn_dim_expansion: int = 4,
        activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if nhead != 1:
            raise NotImplementedError("only single-head attention is implemented (as the paper)")
        self.d_model = d_model
        self.attention_type = attention_type
        self.activation_checkpointing = activation_checkpointing
        self.layers = nn.ModuleList(
            TransformerBlock(d_model, ffn_dim_expansion, attention_type == "swin" and i % 2 == 1)
            for i in range(num_layers)
        )
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(
        self, feature0: torch.Tensor, feature1: torch.Tensor, num_splits: int = 2
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """feature0, feature1 (B,C,h,w) → both refined, (B,C,h,w); pair i is (feature0[i], feature1[i])."""
        b, c, h, w = feature0.shape
        if self.attention_type != "swin":
            num_splits = 1
        device = feature0.device
        layouts = [window_layout(h, w, num_splits, shifted, device) for shifted in (False, True)]
        # both directions at once: rows [0, B) attend to their pair's second map, [B, 2B) back
        tokens = torch.cat((feature0, feature1), dim=0).flatten(2).transpose(1, 2)  # image order
        current = None  # None: image order; else the layout the tokens are in
        for layer in self.layers:
            layout = layouts[int(layer.with_shift)]
            if layout is not current:
                tokens = tokens.index_select(1, _reorder(current, layout))
                current = layout
            if self.activation_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(layer, tokens, layout.groups, use_reentrant=False)
            else:
                tokens = layer(tokens, layout.groups)
        if current is not None:
            tokens = tokens.index_select(1, _reorder(current, None))
        out = tokens.transpose(1, 2).reshape(2 * b, c, h, w)
        return out[:b], out[b:]


def _reorder(source: WindowLayout | None, target: WindowLayout | None) -> torch.Tensor:
    """Gather index taking tokens from layout ``source`` to layout ``target`` (None = image order)."""
    if target is None:
        return torch.argsort(source.order)
    if source is None:
        return target.order
    return torch.argsort(source.order)[target.order]
