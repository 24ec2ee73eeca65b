"""Feature transformer: self-attention, then cross-attention + FFN, in (shifted) windows.

Attention runs through ``F.scaled_dot_product_attention`` so the window score matrices are
never kept for backward (the CPU/GPU fused kernels recompute them), and the shifted-window
mask is passed as an additive float mask (-100 between different regions, as the paper's
model does rather than -inf).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from gmrw.models.windows import merge_windows, split_windows

SHIFT_MASK_VALUE = -100.0


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back, so bf16 activations normalise stably."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


def shifted_window_mask(h: int, w: int, num_splits: int, device=None) -> torch.Tensor:
    """(K*K, L, L) additive mask, L = (h/K)*(w/K), for windows of a map rolled by half a window.

    After the roll, a window at the border holds pixels from up to 4 regions that were not
    neighbours in the image; attention between different regions gets -100.
    """
    wh, ww = h // num_splits, w // num_splits
    sh, sw = wh // 2, ww // 2
    row = torch.zeros(h, dtype=torch.long, device=device)
    row[h - wh :] = 1
    row[h - sh :] = 2
    col = torch.zeros(w, dtype=torch.long, device=device)
    col[w - ww :] = 1
    col[w - sw :] = 2
    region = (row[:, None] * 3 + col[None, :])[None, :, :, None]  # (1,h,w,1)
    region = split_windows(region, num_splits, channel_last=True).reshape(-1, wh * ww)
    differs = region[:, :, None] != region[:, None, :]
    return torch.zeros(differs.shape, device=device).masked_fill(differs, SHIFT_MASK_VALUE)


def window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    h: int,
    w: int,
    num_splits: int,
    shift_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Single-head attention inside KxK windows. q,k,v (B,h*w,C) → (B,h*w,C).

    With ``shift_mask`` (from :func:`shifted_window_mask`) the map is rolled by half a window
    first and rolled back after, so windows straddle the previous layer's window borders.
    """
    b, _, c = q.shape
    kk = num_splits * num_splits
    shift = (-(h // num_splits // 2), -(w // num_splits // 2))

    def to_windows(x: torch.Tensor) -> torch.Tensor:  # (B,L,C) → (B,K*K,L/K²,C)
        x = x.reshape(b, h, w, c)
        if shift_mask is not None:
            x = torch.roll(x, shifts=shift, dims=(1, 2))
        return split_windows(x, num_splits, channel_last=True).reshape(b, kk, -1, c)

    mask = None if shift_mask is None else shift_mask.to(q.dtype)
    out = F.scaled_dot_product_attention(to_windows(q), to_windows(k), to_windows(v), mask)
    out = merge_windows(
        out.reshape(b * kk, h // num_splits, w // num_splits, c), num_splits, channel_last=True
    )
    if shift_mask is not None:
        out = torch.roll(out, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    return out.reshape(b, h * w, c)


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
        self,
        source: torch.Tensor,
        target: torch.Tensor,
        h: int,
        w: int,
        num_splits: int,
        shift_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """source, target (B,h*w,C) → (B,h*w,C)."""
        q, k, v = self.q_proj(source), self.k_proj(target), self.v_proj(target)
        if num_splits > 1:
            message = window_attention(q, k, v, h, w, num_splits, shift_mask)
        else:
            message = F.scaled_dot_product_attention(q, k, v)
        message = self.norm1(self.merge(message))
        if not self.no_ffn:
            message = self.norm2(self.mlp(torch.cat([source, message], dim=-1)))
        return source + message


class TransformerBlock(nn.Module):
    """Self-attention (no FFN), then cross-attention with FFN."""

    def __init__(self, d_model: int, ffn_dim_expansion: int, with_shift: bool) -> None:
        super().__init__()
        self.with_shift = with_shift
        self.self_attn = TransformerLayer(d_model, ffn_dim_expansion, no_ffn=True)
        self.cross_attn_ffn = TransformerLayer(d_model, ffn_dim_expansion)

    def forward(self, source, target, h, w, num_splits, shift_mask):
        mask = shift_mask if self.with_shift else None
        source = self.self_attn(source, source, h, w, num_splits, mask)
        return self.cross_attn_ffn(source, target, h, w, num_splits, mask)


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
        shift_mask = None
        if num_splits > 1:
            shift_mask = shifted_window_mask(h, w, num_splits, feature0.device)
        # both directions at once: rows [0, B) attend to their pair's second map, [B, 2B) back
        tokens0 = feature0.flatten(2).transpose(1, 2)
        tokens1 = feature1.flatten(2).transpose(1, 2)
        source = torch.cat((tokens0, tokens1), dim=0)
        target = torch.cat((tokens1, tokens0), dim=0)
        for layer in self.layers:
            if self.activation_checkpointing and torch.is_grad_enabled():
                source = checkpoint(layer, source, target, h, w, num_splits, shift_mask, use_reentrant=False)
            else:
                source = layer(source, target, h, w, num_splits, shift_mask)
            target = torch.cat(source.chunk(2, dim=0)[::-1], dim=0)
        out0, out1 = source.chunk(2, dim=0)
        return (
            out0.transpose(1, 2).reshape(b, c, h, w),
            out1.transpose(1, 2).reshape(b, c, h, w),
        )
