"""Building blocks of GMRW on tiny random inputs (no fixtures needed)."""

from __future__ import annotations

import math

import pytest
import torch

import gmrw.models.matching as matching
from gmrw.models import GMRW
from gmrw.models.position import add_window_position, sine_position_code
from gmrw.models.transformer import window_attention, window_layout
from gmrw.models.windows import merge_windows, split_windows


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GMRW().eval()


def images(b: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g) * 255


@pytest.mark.parametrize("channel_last", [False, True])
def test_split_merge_roundtrip(channel_last):
    x = torch.randn(2, 4, 8, 6)
    windows = split_windows(x, 2, channel_last)
    assert windows.shape[0] == 8
    assert torch.equal(merge_windows(windows, 2, channel_last), x)


@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("h,w,k", [(8, 8, 2), (12, 6, 3), (6, 10, 2)])
def test_window_attention_equals_masked_dense_attention(shift, h, w, k):
    """Dense attention over the whole map, allowed only within a window (and, when shifted,
    -100 between different regions of the rolled map, like the paper's mask)."""
    b, c = 2, 4
    wh, ww = h // k, w // k
    sh, sw = wh // 2, ww // 2
    q, kk, v = (torch.randn(b, h * w, c, dtype=torch.float64) for _ in range(3))
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    if shift:  # position in the rolled map (rolled by -half a window)
        ys, xs = (ys - sh) % h, (xs - sw) % w
    window = (ys // wh) * k + xs // ww
    region = ((ys >= h - wh).long() + (ys >= h - sh)) * 3 + (xs >= w - ww).long() + (xs >= w - sw)
    window, region = window.flatten(), region.flatten()
    bias = torch.full((h * w, h * w), float("-inf"), dtype=torch.float64)
    same_window = window[:, None] == window[None, :]
    bias[same_window] = 0.0
    if shift:
        bias[same_window & (region[:, None] != region[None, :])] = -100.0
    expected = torch.softmax(q @ kk.transpose(1, 2) / math.sqrt(c) + bias, -1) @ v
    layout = window_layout(h, w, k, shift)
    order = layout.order
    assert sorted(order.tolist()) == list(range(h * w))
    out = window_attention(q[:, order], kk[:, order], v[:, order], layout.groups)
    torch.testing.assert_close(out[:, torch.argsort(order)], expected)
    if shift and (h, w, k) == (8, 8, 2):  # bottom-right window: four quadrants; neighbours: halves
        assert layout.groups == ((1, 16), (4, 8), (4, 4))


def test_position_code_is_the_same_in_every_window():
    x = torch.zeros(1, 8, 6, 10)
    out = add_window_position(x, 2)
    assert torch.equal(out[..., :3, :5], out[..., 3:, 5:])
    code = sine_position_code(3, 5, 8)
    # channel 0: sin of the normalised y position; channel 4 (first x channel): sin of x
    assert math.isclose(code[0, 1, 0].item(), math.sin(2 / 3 * 2 * math.pi), abs_tol=1e-5)
    assert math.isclose(code[4, 0, 2].item(), math.sin(3 / 5 * 2 * math.pi), abs_tol=1e-5)
    assert torch.equal(out[0, :, :3, :5], code)


def test_transition_rows_are_distributions(model):
    with torch.no_grad():
        probs = model.transition(images(2), images(2, seed=1))
    assert probs.shape == (2, 64, 64)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 64))


@pytest.mark.parametrize(
    "method,window", [("weighted_sum", None), ("argmax", None), ("weighted_argmax", 2.5)]
)
def test_flow_from_features_agrees_with_transition_and_chunks(model, monkeypatch, method, window):
    with torch.no_grad():
        src, dst = model.pair_features(images(2), images(2, seed=1))
        dense = matching.flow_from_transition(
            matching.transition_from_features(src, dst), 8, 8, method, window
        )
        monkeypatch.setattr(matching, "CHUNK_ELEMENTS", 2 * 64 * 5)  # 5-row chunks
        chunked = matching.flow_from_features(src, dst, method, window)
        chunked_dense = matching.flow_from_transition(
            matching.transition_from_features(src, dst), 8, 8, method, window
        )
    torch.testing.assert_close(chunked, dense, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(chunked_dense, dense, atol=1e-5, rtol=1e-5)


def test_batched_pairs_equal_single_pairs(model):
    src, dst = images(3), images(3, seed=1)
    with torch.no_grad():
        batched = model.flow(src, dst, size=(20, 24))
        single = torch.cat([model.flow(src[i : i + 1], dst[i : i + 1], size=(20, 24)) for i in range(3)])
    assert batched.shape == (3, 2, 20, 24)
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)


def test_unknown_flow_method_and_missing_window_raise(model):
    with pytest.raises(ValueError):
        model.flow(images(1), images(1), method="nearest")
    with pytest.raises(ValueError):
        model.flow(images(1), images(1), method="weighted_argmax")
    with pytest.raises(ValueError):
        GMRW(flow_method="weighted_argmax")


def test_weighted_argmax_window_is_strict():
    probs = torch.tensor([[[0.5, 0.3, 0.2]]])  # cells at x = 0, 1, 2 on a 1x3 grid
    coords = matching.cell_coords(1, 3)
    kept = matching.window_around_argmax(probs, coords, 1.0)
    torch.testing.assert_close(kept, torch.tensor([[[1.0, 0.0, 0.0]]]))
    kept = matching.window_around_argmax(probs, coords, 1.01)
    torch.testing.assert_close(kept, torch.tensor([[[0.625, 0.375, 0.0]]]))


@pytest.mark.parametrize("chunk_tokens", [100, 3], ids=["one-chunk", "chunks-3-3-3-1"])
def test_feed_forward_gradients_equal_autograd(monkeypatch, chunk_tokens):
    """The memory-lean FFN (recomputes its hidden layer in backward, chunk by chunk of tokens) is
    exact in float64."""
    import gmrw.models.transformer as transformer
    from gmrw.models.transformer import feed_forward

    monkeypatch.setattr(transformer, "_FFN_TRAIN_CHUNK_ELEMENTS", 12 * chunk_tokens)  # hidden width 12
    g = torch.Generator().manual_seed(0)
    x, w1, w2 = (
        torch.randn(*shape, generator=g, dtype=torch.float64) for shape in ((2, 5, 6), (12, 6), (3, 12))
    )
    ours = [t.clone().requires_grad_() for t in (x, w1, w2)]
    plain = [t.clone().requires_grad_() for t in (x, w1, w2)]
    out = feed_forward(*ours, recompute=True)
    expected = torch.nn.functional.linear(torch.nn.functional.gelu(plain[0] @ plain[1].t()), plain[2])
    torch.testing.assert_close(out, expected)
    weight = torch.randn(out.shape, generator=g, dtype=torch.float64)
    (out * weight).sum().backward()
    (expected * weight).sum().backward()
    for mine, theirs in zip(ours, plain):
        torch.testing.assert_close(mine.grad, theirs.grad)


def test_feed_forward_under_bf16_autocast_keeps_weight_grads_float32(monkeypatch):
    import gmrw.models.transformer as transformer
    from gmrw.models.transformer import feed_forward

    monkeypatch.setattr(transformer, "_FFN_TRAIN_CHUNK_ELEMENTS", 16 * 3)  # chunks of 3, 1 tokens
    x = torch.randn(4, 8, requires_grad=True)
    w1 = torch.randn(16, 8, requires_grad=True)
    w2 = torch.randn(8, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = feed_forward(x, w1, w2, recompute=True)
        expected = torch.nn.functional.linear(torch.nn.functional.gelu(torch.nn.functional.linear(x, w1)), w2)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, expected)
    out.float().sum().backward()
    assert w1.grad.dtype == w2.grad.dtype == x.grad.dtype == torch.float32
    reference = [t.detach().clone().requires_grad_() for t in (x, w1, w2)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = torch.nn.functional.linear(
            torch.nn.functional.gelu(torch.nn.functional.linear(reference[0], reference[1])), reference[2]
        )
    plain.float().sum().backward()
    for mine, theirs in zip((x, w1, w2), reference):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=2e-2, atol=2e-2)


def test_pixel_divisor_reproduces_the_papers_tapvid_input_scaling():
    x = images(1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(GMRW().normalize(x), (x / 255 - mean) / std)
    torch.testing.assert_close(GMRW(pixel_divisor=1.0).normalize(x), (x - mean) / std)
    with pytest.raises(ValueError):
        GMRW(pixel_divisor=0)


def test_feed_forward_recomputes_only_large_hidden_layers(monkeypatch):
    import gmrw.models.transformer as transformer

    x, w1, w2 = torch.randn(4, 8, requires_grad=True), torch.randn(16, 8), torch.randn(8, 16)
    assert "_FeedForward" not in type(transformer.feed_forward(x, w1, w2).grad_fn).__name__
    monkeypatch.setattr(transformer, "FFN_RECOMPUTE_ELEMENTS", 4 * 16)
    assert "_FeedForward" in type(transformer.feed_forward(x, w1, w2).grad_fn).__name__


@pytest.mark.parametrize("radius", [0.5, 1.0, 1.01, 2.0, 2.5, 40.0])
def test_windowed_expectation_equals_the_full_window(radius):
    """The gathered read-out equals renormalising the whole row (window_around_argmax) and taking
    its expectation: peaks in corners and on borders, peaked and flat rows, a non-square grid."""
    h, w = 5, 7
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(4 * torch.randn(3, 2 * h * w, h * w, generator=g, dtype=torch.float64), dim=-1)
    for row, cell in enumerate((0, w - 1, h * w - 1, (h - 1) * w, 3)):  # corners and a border cell
        probs[0, row, cell] += 10.0
    probs = probs / probs.sum(-1, keepdim=True)
    coords = matching.cell_coords(h, w, dtype=torch.float64)
    expected = matching.window_around_argmax(probs, coords, radius) @ coords
    torch.testing.assert_close(matching.windowed_expectation(probs, w, radius), expected)


def test_windowed_expectation_of_an_empty_window_is_zero():
    probs = torch.softmax(torch.randn(1, 4, 4), dim=-1)
    assert matching.windowed_expectation(probs, 2, 0.0).abs().max() == 0
