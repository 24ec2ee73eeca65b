"""TAP-Vid metrics: reference parity (metrics.pt), today's tapnet rules, and TapVidMetric accumulation/sync."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmrw.metrics import METRIC_NAMES, TapVidMetric, compute_tapvid_metrics, evaluation_mask

ARGS = ("query_points", "gt_occluded", "gt_tracks", "pred_occluded", "pred_tracks")


@pytest.fixture(scope="module")
def ref(fixtures_dir):
    return torch.load(fixtures_dir / "metrics.pt")


def _inputs(ref, index=slice(None)):
    return [ref[k][index] for k in ARGS]


def _scored_count(ref, mode, rule, video):
    mask = evaluation_mask(ref["query_points"].numpy(), ref["gt_occluded"].numpy(), mode, rule)
    return mask.sum(axis=(1, 2)), mask.sum()


@pytest.mark.parametrize("rule", ["tapnet", "reference_2022"])
def test_strided_matches_reference_exactly(ref, rule):
    ours = compute_tapvid_metrics(*_inputs(ref), "strided", first_mode_rule=rule)
    expected = ref["metrics"]["strided"]
    for name in METRIC_NAMES:
        if name == "occlusion_accuracy":
            continue
        np.testing.assert_array_equal(ours[name], expected[name].numpy(), err_msg=name)


@pytest.mark.parametrize("mode,rule", [("strided", "tapnet"), ("first", "reference_2022")])
def test_occlusion_accuracy_is_per_video(ref, mode, rule):
    """The reference divides by the batch's scored count; ours by the video's own. So ours equals
    reference × batch count / video count, and equals the reference called on each video alone."""
    ours = compute_tapvid_metrics(*_inputs(ref), mode, first_mode_rule=rule)["occlusion_accuracy"]
    per_video, batch = _scored_count(ref, mode, rule, None)
    reference = ref["metrics"][mode]["occlusion_accuracy"].numpy()
    np.testing.assert_allclose(ours, reference * batch / per_video, rtol=1e-12)
    for i in range(ref["query_points"].shape[0]):
        alone = compute_tapvid_metrics(*_inputs(ref, slice(i, i + 1)), mode, first_mode_rule=rule)
        np.testing.assert_array_equal(alone["occlusion_accuracy"], ours[i : i + 1])
    assert np.all(ours > 0.6) and np.all(reference < 0.5)  # the batch bug roughly halves it


def test_first_mode_reference_rule_matches_reference_exactly(ref):
    ours = compute_tapvid_metrics(*_inputs(ref), "first", first_mode_rule="reference_2022")
    expected = ref["metrics"]["first"]
    for name in METRIC_NAMES:
        if name != "occlusion_accuracy":
            np.testing.assert_array_equal(ours[name], expected[name].numpy(), err_msg=name)


def test_first_mode_default_is_todays_tapnet(ref):
    """The default rule scores only frames after the query frame, so it differs from the fixture."""
    ours = compute_tapvid_metrics(*_inputs(ref), "first")
    mask = evaluation_mask(ref["query_points"].numpy(), ref["gt_occluded"].numpy(), "first")
    t = ref["query_points"][..., 0].round().long().numpy()
    assert np.array_equal(mask, np.arange(12)[None, None] > t[..., None])
    assert not np.allclose(ours["average_jaccard"], ref["metrics"]["first"]["average_jaccard"].numpy())


def test_first_mode_hand_computed():
    """One video, 2 tracks, 4 frames, queried at frames 1 and 0."""
    q = np.array([[[1, 0, 0], [0, 0, 0]]], np.float32)
    gt_occ = np.array([[[True, False, False, True], [False, False, True, False]]])
    gt = np.zeros((1, 2, 4, 2), np.float32)
    pred = gt.copy()
    pred[0, 0, 2] = [3, 0]  # 3 px off: within 4, 8, 16 only
    pred[0, 1, 3] = [0, 1.5]  # 1.5 px off: within 2 and up
    pred_occ = np.array([[[False, False, False, False], [False, False, True, True]]])
    # tapnet rule: track 0 scores frames 2, 3; track 1 frames 1, 2, 3.
    out = compute_tapvid_metrics(q, gt_occ, gt, pred_occ, pred, "first")
    # occlusion right at (0,2), (1,1), (1,2) ; wrong at (0,3) and (1,3) → 3/5
    assert out["occlusion_accuracy"][0] == pytest.approx(3 / 5)
    # visible scored: (0,2), (1,1), (1,3) → 3. within 1: (1,1) only; within 2: + (1,3); within 4: all
    assert out["pts_within_1"][0] == pytest.approx(1 / 3)
    assert out["pts_within_2"][0] == pytest.approx(2 / 3)
    assert out["pts_within_4"][0] == pytest.approx(1.0)
    # jaccard_4: TP = visible & within & predicted visible = (0,2), (1,1) (1,3 predicted occluded) → 2;
    # FP = predicted visible & (occluded or far) = (0,3) → 1; jaccard = 2 / (3 + 1)
    assert out["jaccard_4"][0] == pytest.approx(2 / 4)
    # jaccard_1: TP (1,1); FP (0,2) far and (0,3) occluded → 1 / (3 + 2)
    assert out["jaccard_1"][0] == pytest.approx(1 / 5)
    # The 2022 rule scores frame 0 of track 0 too (every frame but the query frame).
    old = compute_tapvid_metrics(q, gt_occ, gt, pred_occ, pred, "first", first_mode_rule="reference_2022")
    assert old["occlusion_accuracy"][0] == pytest.approx(3 / 6)


def test_bad_arguments():
    q = np.zeros((1, 1, 3))
    occ = np.zeros((1, 1, 2), bool)
    tr = np.zeros((1, 1, 2, 2))
    with pytest.raises(ValueError, match="query mode"):
        compute_tapvid_metrics(q, occ, tr, occ, tr, "sometimes")
    with pytest.raises(ValueError, match="first_mode_rule"):
        compute_tapvid_metrics(q, occ, tr, occ, tr, "first", first_mode_rule="2019")
    with pytest.raises(ValueError, match="pred_tracks"):
        compute_tapvid_metrics(q, occ, tr, occ, tr[:, :, :1], "first")


def _means(ref, mode):
    per_video = compute_tapvid_metrics(*_inputs(ref), mode)
    return {k: float(np.mean(v)) for k, v in per_video.items()}


def test_metric_accumulates_per_video(ref):
    metric = TapVidMetric(query_mode="strided")
    for i in range(2):
        metric.update(*_inputs(ref, slice(i, i + 1)))
    out = metric.compute()
    assert out["num_videos"] == 2
    for name, value in _means(ref, "strided").items():
        assert float(out[name]) == pytest.approx(value, abs=1e-12), name
    metric.reset()
    metric.update(*_inputs(ref))  # one batch of two videos: same numbers
    assert float(metric.compute()["average_jaccard"]) == pytest.approx(
        _means(ref, "strided")["average_jaccard"]
    )


def _fake_gather(other: TapVidMetric):
    """A stand-in for torch.distributed's all-gather with a second rank holding ``other``'s state."""

    def gather(tensor, group=None):
        mine = tensor
        theirs = other.rows if tensor.dtype == torch.float64 else other.ids
        theirs = (
            torch.cat(theirs) if isinstance(theirs, list) and theirs else torch.zeros(0, dtype=tensor.dtype)
        )
        return [mine, theirs]

    return gather


def test_metric_sync_across_ranks_counts_each_video_once(ref):
    rank0, rank1 = TapVidMetric("strided"), TapVidMetric("strided")
    names = ["bear", "horse"]
    rank0.update(*_inputs(ref, slice(0, 1)), video_ids=names[:1])
    rank1.update(*_inputs(ref, slice(1, 2)), video_ids=names[1:])
    # DistributedSampler-style padding: rank 1 also got video 0 again.
    rank1.update(*_inputs(ref, slice(0, 1)), video_ids=names[:1])
    rank0.dist_sync_fn, rank0.distributed_available_fn = _fake_gather(rank1), lambda: True
    out = rank0.compute()  # syncs, computes, unsyncs
    assert len(rank0.per_video()["id"]) == 1  # this rank's own rows are back after compute
    assert out["num_videos"] == 2
    for name, value in _means(ref, "strided").items():
        assert float(out[name]) == pytest.approx(value, abs=1e-12), name


def test_metric_sync_with_an_idle_rank(ref):
    busy, idle = TapVidMetric("strided"), TapVidMetric("strided")
    busy.update(*_inputs(ref))
    idle.dist_sync_fn, idle.distributed_available_fn = _fake_gather(busy), lambda: True
    idle._update_count = 1  # as after an epoch in which this rank got no video
    out = idle.compute()
    assert out["num_videos"] == 2
    assert float(out["average_jaccard"]) == pytest.approx(_means(ref, "strided")["average_jaccard"])


def test_metric_rejects_unknown_rule():
    with pytest.raises(ValueError, match="first_mode_rule"):
        TapVidMetric("first", first_mode_rule="old")
