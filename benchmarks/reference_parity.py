"""Parity with the paper's implementation on the reference fixtures: what we compute, what the
reference stored, and how far float32 lets the two differ.

One home for the parity checks of ``tests/test_models_parity.py`` (CPU) and ``benchmarks/gpu_check.py``
(any device, against the fixtures and against our own CPU outputs). ``fixture_outputs`` runs our code,
``fixture_expected`` reads the reference's, :func:`compare` gives one row per check.

Why the matching tolerances are bounds, not constants
----------------------------------------------------
Our features and the reference's come out of different kernels (oneDNN's convolutions, the
transformer's matmuls), whose accumulation order depends on the CPU's instruction set and the thread
count, so no fixed figure measured on one CPU holds on the next. Instead:

* **Logits.** ``s_ij = <f_i, g_j> / T`` sums C products. Summed in two different orders, float32
  results differ by at most ``2·γ_C·Σ_c |f_ic g_jc| / T`` with ``γ_C ≈ C·u`` (Higham, *Accuracy and
  Stability of Numerical Algorithms*, §3.1; ``u = eps/2``), i.e. ``Δ = C·eps·M`` where
  ``M = max_ij Σ_c |f_ic g_jc| / T`` (:func:`logit_budget`). We budget every difference between the
  two computations of a logit (the last product and the layers before it, each normalised) as one
  such reordered accumulation.
* **Transition.** ``log P_ij = s_ij − logsumexp_k s_ik`` moves by at most ``2Δ`` when every logit of
  the row moves by at most ``Δ``; the softmax's own rounding (an N-term sum, a division, both sides)
  adds ``ρ = 2·(N + 2)·u`` relative. Checked in log space on every entry float32 holds as a normal
  number (:func:`transition_error`), so an entry of 1e-20 is checked as strictly as one of 0.5.
  The check cannot be fooled by a bug that inflates the features (and with them ``M``): log-probabilities
  move in proportion to the logits themselves, ``Δ`` by ``C·eps`` of them.
* **Weighted-sum flows.** ``Δ target_i = Σ_j ΔP_ij (x_j − x̄_i)`` (the ``ΔP`` of a row sum to 0), and
  ``|ΔP_ij| ≤ (e^{2Δ} − 1 + ρ)·P_ij``, so each coordinate moves by at most ``(e^{2Δ} − 1 + ρ)`` times
  the row's mean absolute deviation of target cells under the reference's own probabilities, plus
  the rounding of the N-term expectation on both sides (``2·N·u·max|x|``). Bilinear upsampling is a
  convex combination and the size ratio a scale: the same upsampling applied to the per-cell bound
  bounds the per-pixel error (:func:`flow_bound`).
* **Argmax read-outs.** A row's argmax is the same on both sides when its top-two logit margin
  (``log P1 − log P2`` of the reference) exceeds ``2Δ + 2ρ``. Those rows must give the same argmax
  cell (argmax flows exact) and the same window (weighted_argmax: the bound above over the window's
  renormalised probabilities). A row inside that margin is a near-tie float32 cannot decide; its
  bound is the grid's diagonal (the window may land anywhere).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from gmrw.models.matching import cell_coords, resize_flow, window_around_argmax

UNIT_ROUNDOFF = torch.finfo(torch.float32).eps / 2
#: Smallest probability whose logarithm float32 still holds to full relative precision.
NORMAL_FLOOR = torch.finfo(torch.float32).tiny

#: Biases whose gradient is analytically zero (they feed an InstanceNorm without affine, which removes
#: any per-channel constant): both sides hold rounding noise (the reference's norms are 4e-7 and 9e-7
#: against a total of 836), so only "both tiny" is checked.
ZERO_GRAD_PARAMS = {"backbone.layer2.0.downsample.0.bias", "backbone.layer3.0.downsample.0.bias"}
FLOW_KEYS = ("argmax", "weighted_sum", "weighted_argmax@5", "weighted_argmax@20")
TRACK_KEYS = ("chained/uf1/weighted_sum", "direct/uf1/weighted_argmax@5")
#: Fixed tolerances of the checks that are not matching read-outs (unchanged from the CPU tests).
ROW_SUM_TOLERANCE = 1e-5  # |Σ_j P_ij − 1|
LOSS_RATIO_TOLERANCE = 1e-4  # |ours / reference − 1| for loss, cycle_loss, smoothness_loss
GRAD_NORM_RATIO_TOLERANCE = 1e-3  # worst |ours / reference − 1| over parameters
ZERO_GRAD_TOLERANCE = 1e-5  # both norms of an analytically zero gradient
TRACK_TOLERANCE_PX = 1e-2  # tracks at ×1 (tests/test_tracking_reference.py)


# ----------------------------------------------------------------------------- float32 bounds
def logit_budget(
    feature_src: torch.Tensor, feature_dst: torch.Tensor, temperature: float | None = None
) -> float:
    """Δ = C·eps·max_ij Σ_c |f_ic g_jc| / T for features (B,C,h,w) x2 (T = sqrt(C) unless given)."""
    c = feature_src.shape[1]
    scale = 1.0 / (temperature if temperature else math.sqrt(c))
    src = feature_src.flatten(2).transpose(1, 2).abs().double()
    dst = feature_dst.flatten(2).abs().double()
    magnitude = torch.bmm(src, dst).max().item() * scale
    return 2 * c * UNIT_ROUNDOFF * magnitude


def softmax_rounding(n: int) -> float:
    """ρ: relative rounding of an n-way float32 softmax, both sides."""
    return 2 * (n + 2) * UNIT_ROUNDOFF


def transition_error(probs: torch.Tensor, expected: torch.Tensor, budget: float) -> float:
    """Worst |log P − log P_ref| as a fraction of its float32 bound ``2Δ + ρ`` (≤ 1 passes), over the
    entries the reference holds far enough above float32's normal range that ours is normal too
    (denormals may be flushed); the others must stay below that floor times ``e^{2Δ + ρ}`` (else the
    ratio returned is how far above it they are)."""
    bound = 2 * budget + softmax_rounding(expected.shape[-1])
    floor = NORMAL_FLOOR * math.exp(bound)
    ours, ref = probs.double(), expected.double()
    held = ref >= floor
    worst = ((ours[held].log() - ref[held].log()).abs().max() / bound).item()
    if (~held).any():
        above = (ours[~held].max() / (floor * math.exp(bound))).item()
        if above > 1:
            worst = max(worst, above)
    return worst


def decided_rows(expected: torch.Tensor, budget: float) -> torch.Tensor:
    """(B, N) bool: rows whose argmax float32 decides (top-two log margin of the reference > 2Δ + 2ρ)."""
    top = expected.double().topk(2, dim=-1).values
    margin = top[..., 0].log() - top[..., 1].clamp_min(1e-300).log()
    return margin > 2 * budget + 2 * softmax_rounding(expected.shape[-1])


def flow_bound(expected: torch.Tensor, key: str, budget: float, size: tuple[int, int]) -> torch.Tensor:
    """(B, 2, H, W): the most each flow component may differ from the reference's, in pixels of
    ``size``, given the reference's transition ``expected`` (B, h*w, h*w) on an (h, w) grid (square
    here: the fixtures' 16 × 16) and the logit budget."""
    method, _, radius = key.partition("@")
    b, n, _ = expected.shape
    h = w = math.isqrt(n)
    coords = cell_coords(h, w, dtype=torch.float64)
    probs = expected.double()
    rho = softmax_rounding(n)
    if method == "argmax":
        per_cell = torch.zeros(b, n, 2, dtype=torch.float64)
    else:
        if method == "weighted_argmax":
            probs = window_around_argmax(probs, coords, float(radius))
        mean = probs @ coords  # (B, N, 2)
        spread = torch.einsum("bij,bijc->bic", probs, (coords - mean[:, :, None]).abs())
        largest = coords.abs().max().item()
        per_cell = (math.expm1(2 * budget) + rho) * spread + 2 * n * UNIT_ROUNDOFF * largest
    undecided = ~decided_rows(expected, budget)
    per_cell[undecided] = math.hypot(h - 1, w - 1)  # a near-tie: the read-out may land anywhere
    cells = per_cell.transpose(1, 2).reshape(b, 2, h, w).float()
    return resize_flow(cells, size)


def flow_error(flow: torch.Tensor, expected_flow: torch.Tensor, expected: torch.Tensor, key: str,
               budget: float) -> float:  # fmt: skip
    """Worst |flow − flow_ref| per pixel as a fraction of :func:`flow_bound` (plus the rounding of the
    upsampling, a few ulps of the largest flow). ≤ 1 passes; argmax flows of decided rows must be exact."""
    bound = flow_bound(expected, key, budget, tuple(expected_flow.shape[-2:]))
    bound = bound + 4 * UNIT_ROUNDOFF * expected_flow.abs().max()
    return ((flow - expected_flow).abs() / bound).max().item()


# ----------------------------------------------------------------------------- the checks
def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max |ours − ref| / max |ref| (entries near zero do not blow the ratio up)."""
    return ((ours.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def load_reference_model(fixtures: Path):
    """A GMRW with the fixtures' weights, loaded strictly, in eval mode (on the CPU)."""
    from gmrw.models import GMRW

    model = GMRW()
    model.load_state_dict(torch.load(fixtures / "model.pt")["state_dict"], strict=True)
    return model.eval()


def fixture_outputs(fixtures: Path, device: torch.device) -> dict:
    """Our outputs on the fixtures' inputs, computed on ``device``, as CPU tensors; ``budget`` is the
    logit budget Δ of our features there."""
    from gmrw.checkpoint import load_model
    from gmrw.losses import walk_loss
    from gmrw.tracking import track

    model = load_reference_model(fixtures).to(device)
    data = torch.load(fixtures / "transition.pt")
    img1, img2 = data["img1"].to(device), data["img2"].to(device)
    out: dict = {}
    with torch.no_grad():
        out["transition"] = model.transition(img1, img2).cpu()
        out["budget"] = logit_budget(*model.pair_features(img1, img2), model.temperature)
        for key in FLOW_KEYS:
            method, _, radius = key.partition("@")
            out[f"flow {key}"] = model.flow(img1, img2, method, float(radius) if radius else None).cpu()

    walk = torch.load(fixtures / "walk_loss.pt")
    model.train()
    losses = walk_loss(
        model, walk["frames"].to(device), walk["affine_b2f"].to(device), walk["smoothness_weight"]
    )
    for key in ("loss", "cycle_loss", "smoothness_loss", "accuracy"):
        out[key] = losses[key].detach().cpu()
    losses["loss"].backward()
    out["grad_norms"] = {name: p.grad.norm().item() for name, p in model.named_parameters()}

    tracked = torch.load(fixtures / "track.pt")
    tracker = load_model(fixtures / "model.pt").to(device)
    for key in TRACK_KEYS:
        mode, uf, method = key.split("/")
        method, _, window = method.partition("@")
        tracks, occluded = track(
            tracker,
            tracked["video"],
            tracked["query_points"].clone(),
            mode=mode,
            upsample_factor=int(uf[2:]),
            method=method,
            window=float(window) if window else None,
            pair_batch_size=16,
        )
        out[f"tracks {key}"] = tracks.cpu()
        out[f"visible {key}"] = (~occluded).cpu()
    return out


def fixture_expected(fixtures: Path) -> dict:
    """The reference's stored outputs, keyed as :func:`fixture_outputs`."""
    data = torch.load(fixtures / "transition.pt")
    walk = torch.load(fixtures / "walk_loss.pt")
    tracked = torch.load(fixtures / "track.pt")
    expected = {"transition": data["probs"], "grad_norms": dict(walk["grad_norms"])}
    expected.update({f"flow {key}": data["flows"][key] for key in FLOW_KEYS})
    expected.update({key: walk[key] for key in ("loss", "cycle_loss", "smoothness_loss", "accuracy")})
    for key in TRACK_KEYS:
        expected[f"tracks {key}"] = tracked["tracks"][key]
        expected[f"visible {key}"] = tracked["visible"][key]
    return expected


def compare(ours: dict, expected: dict, against: str) -> list[dict]:
    """One row per quantity: its deviation from ``expected`` (a fraction of the float32 bound for
    the matching read-outs), its tolerance, passed."""
    rows = []

    def add(name: str, value: float, tolerance: float, strict: bool = False) -> None:
        passed = value <= tolerance if not strict else value < tolerance
        rows.append(
            {"check": name, "against": against, "value": value, "tolerance": tolerance, "passed": passed}
        )

    budget = ours["budget"]
    add(
        "transition |Δ log P| / float32 bound",
        transition_error(ours["transition"], expected["transition"], budget),
        1.0,
    )
    row_sums = (ours["transition"].sum(-1) - 1).abs().max().item()
    add("transition rows sum to 1 (abs)", row_sums, ROW_SUM_TOLERANCE)
    for key in FLOW_KEYS:
        error = flow_error(ours[f"flow {key}"], expected[f"flow {key}"], expected["transition"], key, budget)
        add(f"flow {key} |error| / float32 bound", error, 1.0)
    for key in ("loss", "cycle_loss", "smoothness_loss"):
        add(
            f"{key} |ratio - 1|",
            abs(ours[key].item() / expected[key].item() - 1),
            LOSS_RATIO_TOLERANCE,
            strict=True,
        )
    add("accuracy |difference|", abs(ours["accuracy"].item() - expected["accuracy"].item()), 0.0)
    worst = max(
        abs(ours["grad_norms"][name] / expected["grad_norms"][name] - 1)
        for name in expected["grad_norms"]
        if name not in ZERO_GRAD_PARAMS
    )
    add("gradient norms, worst |ratio - 1|", worst, GRAD_NORM_RATIO_TOLERANCE, strict=True)
    zero = max(max(ours["grad_norms"][n], expected["grad_norms"][n]) for n in ZERO_GRAD_PARAMS)
    add("gradients that are analytically 0 (norm)", zero, ZERO_GRAD_TOLERANCE, strict=True)
    for key in TRACK_KEYS:
        error = (ours[f"tracks {key}"] - expected[f"tracks {key}"]).norm(dim=-1).max().item()
        add(f"tracks {key} max error (px)", error, TRACK_TOLERANCE_PX, strict=True)
        flips = (ours[f"visible {key}"] != expected[f"visible {key}"]).sum().item()
        add(f"visibility {key} differences", float(flips), 0.0)
    return rows
