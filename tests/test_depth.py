"""Monodepth building blocks: model, sampler, loss, metrics and data (small and fast)."""

import math

import numpy as np
import pytest
import torch
from depth_fixtures import write_kitti2015, write_kitti_raw
from torch import fx
from torch.utils.data import DataLoader

from tutorial_lib import masks, metrics, models
from tutorial_lib.data import DatasetNotFoundError
from tutorial_lib.depth import errors, losses, stereo
from tutorial_lib.depth.sampler import apply_disparity, reconstruct_left, reconstruct_right
from tutorial_lib.models import monodepth
from tutorial_lib.models.monodepth import MonoDepth

torch.set_num_threads(1)


# --------------------------------------------------------------------------- model


def test_full_monodepth_vgg_has_the_published_parameter_count():
    assert metrics.count_parameters(MonoDepth()) == 31_600_072


def test_forward_gives_four_two_channel_disparities_finest_first():
    disps = MonoDepth(width=1 / 16)(torch.randn(1, 3, 128, 256))
    assert [tuple(d.shape) for d in disps] == [(1, 2, 128, 256), (1, 2, 64, 128), (1, 2, 32, 64), (1, 2, 16, 32)]
    assert all(((d > 0) & (d < 0.3)).all() for d in disps)


def test_traces_with_fx_and_prunable_convs_are_the_encoder_and_upconvs_in_graph_order():
    model = MonoDepth(width=1 / 16).eval()
    gm = fx.symbolic_trace(model)
    x = torch.randn(1, 3, 128, 128)
    for a, b in zip(model(x), gm(x)):
        torch.testing.assert_close(a, b)
    convs = [n.target for n in gm.graph.nodes if n.op == "call_module"
             and isinstance(gm.get_submodule(n.target), torch.nn.Conv2d)]
    names = monodepth.prunable_convs(model)
    assert len(names) == 21 and names[:2] == ["conv1a", "conv1b"] and names[-1] == "upconv1"
    assert [c for c in convs if c in names] == names


def test_masks_go_on_every_prunable_conv():
    gm = masks.insert_masks(MonoDepth(width=1 / 16))
    assert set(monodepth.prunable_convs()) <= set(masks.masks_of(gm))


def test_width_scales_channels_and_keeps_at_least_one():
    assert monodepth.default_widths(0.5)[:3] == [16, 16, 32]
    assert min(monodepth.default_widths(1e-4)) == 1
    assert MonoDepth(width=1e-4)(torch.randn(1, 3, 128, 128))[0].shape == (1, 2, 128, 128)


def test_explicit_widths_prune_only_the_prunable_convs_and_rebuild_from_spec():
    widths = [3, 5, 4, 6, 2, 7, 3, 1, 2, 2, 5, 1, 4, 3, 2, 6, 1, 3, 2, 5, 1]
    model = MonoDepth(width=0.25, widths=widths)
    assert [getattr(model, n).out_channels for n in monodepth.prunable_convs()] == widths
    assert [getattr(model, f"iconv{i}").out_channels for i in range(7, 0, -1)] == [128, 128, 64, 32, 16, 8, 4]
    assert model(torch.randn(1, 3, 128, 128))[0].shape == (1, 2, 128, 128)
    rebuilt = models.from_spec(model.spec())
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.widths == widths and model.spec()["class"] == "MonoDepth"


def test_resize_spec_replaces_the_21_widths_and_names_the_count():
    spec = MonoDepth(width=1 / 16).spec()
    resized = models.resize_spec(spec, [1] * 21)
    assert models.from_spec(resized).conv1a.out_channels == 1
    with pytest.raises(ValueError, match="21"):
        models.resize_spec(spec, [1] * 20)
    with pytest.raises(ValueError, match="21"):
        MonoDepth(widths=[4] * 22)
    with_iconvs = models.resize_spec(spec, list(range(1, 29)))  # graph order: ..., upconv7, iconv7, upconv6, ...
    assert with_iconvs["iconv_widths"] == [16, 18, 20, 22, 24, 26, 28]
    assert with_iconvs["widths"][14:] == [15, 17, 19, 21, 23, 25, 27]
    with pytest.raises(ValueError, match="iconv_widths needs 7"):
        MonoDepth(iconv_widths=[4] * 6)


def test_init_is_deterministic_for_a_seed():
    torch.manual_seed(3)
    a = MonoDepth(width=1 / 16).state_dict()
    torch.manual_seed(3)
    b = MonoDepth(width=1 / 16).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_check_input_size():
    monodepth.check_input_size(256, 512)
    with pytest.raises(ValueError, match=r"128 must divide height and width.*height 300: nearest valid 256 or 384"):
        monodepth.check_input_size(300, 512)
    with pytest.raises(ValueError, match=r"width 100: nearest valid 128\)"):
        monodepth.check_input_size(128, 100)


# --------------------------------------------------------------------------- sampler


def test_integer_shift_is_reconstructed_exactly_away_from_the_border():
    torch.manual_seed(0)
    right = torch.rand(2, 3, 6, 32)
    k = 3
    left = torch.zeros_like(right)
    left[..., k:] = right[..., :-k]  # left(x) = right(x - k)
    disp = torch.full((2, 1, 6, 32), k / 32)
    torch.testing.assert_close(reconstruct_left(right, disp)[..., k:], left[..., k:], atol=1e-6, rtol=0)
    torch.testing.assert_close(reconstruct_right(left, disp)[..., :-k], right[..., :-k], atol=1e-6, rtol=0)
    # past the edge the sample reads the zero ring of the TF code's padding, not the edge pixel
    torch.testing.assert_close(apply_disparity(right, disp)[..., -1], torch.zeros_like(right[..., -1]))
    # the tutorial's edge padding repeats the edge pixel there instead
    torch.testing.assert_close(apply_disparity(right, disp, "border")[..., -1], right[..., -1], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="valid choices: zeros, border"):
        apply_disparity(right, disp, "reflect")


def _tf_bilinear_sampler_1d_h(img: np.ndarray, disp: np.ndarray) -> np.ndarray:
    """monodepth's ``bilinear_sampler_1d_h`` (wrap_mode "border"), one channel, line by line:
    pad one ring of zeros, sample at x + d * width clipped to the ring, blend the two neighbours."""
    h, w = img.shape
    padded = np.pad(img, 1)
    out = np.zeros_like(img)
    for y in range(h):
        for x in range(w):
            xs = np.clip(x + disp[y, x] * w + 1, 0.0, w + 1)
            x0 = int(np.floor(xs))
            x1 = min(x0 + 1, w + 1)
            out[y, x] = (x0 + 1 - xs) * padded[y + 1, x0] + (xs - x0) * padded[y + 1, x1]
    return out


def test_sampler_matches_monodepth_bilinear_sampler_including_past_the_edges():
    rng = np.random.default_rng(0)
    img = rng.random((4, 16)).astype(np.float32)
    disp = rng.uniform(-0.3, 0.3, (4, 16)).astype(np.float32)  # up to 5 px past either edge
    ours = apply_disparity(torch.from_numpy(img)[None, None], torch.from_numpy(disp)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(ours, _tf_bilinear_sampler_1d_h(img, disp), atol=1e-5)


def test_augmented_pairs_stay_rectified_pairs_with_positive_disparity():
    torch.manual_seed(0)
    k, w = 3, 32
    right = torch.rand(64, 3, 6, w) * 0.8 + 0.1
    left = torch.zeros_like(right)
    left[..., k:] = right[..., :-k]  # left(x) = right(x - k): disparity k everywhere
    torch.manual_seed(1)
    new_left, new_right = stereo.augment_pair(left, right)
    disp = torch.full((64, 1, 6, w), k / w)
    inside = slice(k, w - k)  # away from both borders (a mirrored pair's missing strip is on the other side)
    torch.testing.assert_close(reconstruct_left(new_right, disp)[..., inside], new_left[..., inside], atol=1e-5, rtol=0)
    mirrored = [torch.equal(new_left[i], right[i].flip(-1)) for i in range(64)]
    untouched = [torch.equal(new_left[i], left[i]) for i in range(64)]
    assert 6 < sum(mirrored) < 26 and 6 < sum(untouched) < 26  # mirrored only, untouched: about 1/4 each
    assert 0 <= new_left.min() and new_left.max() <= 1
    torch.manual_seed(1)
    again = stereo.augment_pair(left, right)
    assert torch.equal(again[0], new_left) and torch.equal(again[1], new_right)  # the global seed decides


def test_stereo_task_augments_training_batches_only_when_asked():
    from tutorial_lib.depth.task import StereoDepth

    left, right = torch.rand(8, 3, 4, 8), torch.rand(8, 3, 4, 8)
    x, (l, r) = StereoDepth().split((left, right), "cpu")
    assert torch.equal(x, left) and torch.equal(r, right)
    torch.manual_seed(0)
    x, (l, r) = StereoDepth(augment=True).split((left, right), "cpu")
    assert torch.equal(x, l) and not torch.equal(x, left)


def test_half_pixel_shift_interpolates_and_passes_gradients():
    img = torch.arange(8.0).view(1, 1, 1, 8)
    disp = torch.full((1, 1, 1, 8), 0.5 / 8, requires_grad=True)
    out = apply_disparity(img, disp)
    torch.testing.assert_close(out[..., :-1], img[..., :-1] + 0.5)
    out.sum().backward()
    assert disp.grad is not None and disp.grad.abs().sum() > 0


# --------------------------------------------------------------------------- loss


def _texture(h=32, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.avg_pool2d(torch.rand(1, 3, h + 2, w + 2, generator=g), 3, 1)


def test_ssim_of_identical_images_is_one_and_appearance_zero():
    x = _texture()
    torch.testing.assert_close(losses.ssim(x, x), torch.ones(1, 3, 30, 62))
    assert losses.appearance_loss(x, x).item() == pytest.approx(0, abs=1e-6)
    assert 0 <= losses.dssim(x, 1 - x).min() and losses.dssim(x, 1 - x).max() <= 1


def test_smoothness_is_zero_for_constant_disparity_and_lr_zero_for_consistent_ones():
    img = _texture()
    assert losses.smoothness_loss(torch.full((1, 1, 32, 64), 0.1), img).item() == 0
    assert losses.smoothness_loss(torch.rand(1, 1, 32, 64), img).item() > 0
    zero = torch.zeros(1, 1, 32, 64)
    assert losses.lr_consistency_loss(zero, zero).item() == 0
    const = torch.full((1, 1, 32, 64), 0.05)
    # consistent everywhere but at the edge: a warp of 0.05 x 64 = 3.2 px reads the zero padding past
    # the border (as monodepth's sampler does), so 3.2 of 64 columns disagree by 0.05, in each direction
    assert losses.lr_consistency_loss(const, const).item() == pytest.approx(2 * 0.05 * 3.2 / 64, rel=1e-5)


def _shifted_pair(k=8):
    right = _texture(64, 128)
    left = torch.cat([right[..., :1].expand(-1, -1, -1, k), right[..., :-k]], -1)  # left(x) = right(x - k)
    return left, right


def _disps(value, h=64, w=128):
    return [torch.full((1, 2, h // 2 ** s, w // 2 ** s), value, requires_grad=True) for s in range(4)]


def test_correct_disparity_matches_appearance_better_than_wrong_ones():
    left, right = _shifted_pair(8)
    right_d = losses.monodepth_loss(_disps(8 / 128), left, right)["appearance"]
    for wrong in (0.0, 3 / 128, 16 / 128):
        assert losses.monodepth_loss(_disps(wrong), left, right)["appearance"] > 2 * right_d
    assert losses.monodepth_loss(_disps(0.0), left, left)["appearance"].item() == pytest.approx(0, abs=1e-5)


def test_loss_terms_sum_to_the_total_and_pass_gradients():
    left, right = _shifted_pair(8)
    disps = [torch.rand(1, 2, 64 // 2 ** s, 128 // 2 ** s).mul(0.1).requires_grad_() for s in range(4)]
    terms = losses.monodepth_loss(disps, left, right)
    assert set(terms) == {"appearance", "smoothness", "lr_consistency"}
    assert all(t.dim() == 0 and t > 0 for t in terms.values())
    sum(terms.values()).backward()
    assert all(d.grad is not None and torch.isfinite(d.grad).all() and d.grad.abs().sum() > 0 for d in disps)
    off = losses.monodepth_loss([d.detach() for d in disps], left, right, smoothness=0, lr=0)
    assert off["smoothness"] == 0 and off["lr_consistency"] == 0


# --------------------------------------------------------------------------- metrics


def test_depth_errors_by_hand():
    gt, pred = np.array([1.0, 2.0, 4.0, 10.0]), np.array([1.0, 2.4, 2.2, 10.0])
    e = errors.depth_errors(gt, pred)
    assert e["abs_rel"] == pytest.approx((0.4 / 2 + 1.8 / 4) / 4)
    assert e["sq_rel"] == pytest.approx((0.16 / 2 + 3.24 / 4) / 4)
    assert e["rmse"] == pytest.approx(math.sqrt((0.16 + 3.24) / 4))
    assert e["rmse_log"] == pytest.approx(math.sqrt((math.log(1.2) ** 2 + math.log(4 / 2.2) ** 2) / 4))
    assert (e["a1"], e["a2"], e["a3"]) == (0.75, 0.75, 1.0)  # ratios 1, 1.2, 1.82, 1
    masked = errors.depth_errors(gt, pred, mask=np.array([True, True, False, True]))
    assert masked["a1"] == 1.0 and masked["abs_rel"] == pytest.approx(0.2 / 3)


def test_d1_all_counts_errors_over_3px_and_5_percent_of_valid_pixels():
    gt = np.array([10.0, 100.0, 50.0, 0.0])  # the last pixel has no ground truth
    pred = np.array([14.0, 104.0, 50.0, 99.0])  # bad, within 5%, exact, ignored
    assert errors.d1_all(gt, pred) == pytest.approx(100 / 3)
    assert errors.d1_all(torch.tensor(gt), torch.tensor(pred), mask=torch.tensor([1, 1, 0, 0])) == 50.0


def test_disparity_to_depth_with_kitti_constants():
    assert errors.focal_length(1242) == 721.5377 and errors.BASELINE == 0.54
    with pytest.raises(ValueError, match="1242"):
        errors.focal_length(1000)
    assert errors.disp_to_pixels(0.1, 512) == pytest.approx(51.2)
    depth = errors.pixels_to_depth(np.array([10.0, 0.0]), errors.focal_length(1242))
    assert depth[0] == pytest.approx(721.5377 * 0.54 / 10) and np.isfinite(depth[1])
    assert errors.clip_depth(depth)[1] == 80.0
    assert torch.isfinite(errors.pixels_to_depth(torch.zeros(2), 700.0)).all()


# --------------------------------------------------------------------------- data


def test_synthetic_pairs_have_exact_disparity_where_visible_and_are_deterministic():
    left, right, disp, disp_r = stereo.synthetic_stereo(4, 32, 64, seed=1, with_right_disp=True)
    assert left.shape == right.shape == (4, 3, 32, 64) and disp.shape == (4, 1, 32, 64)
    assert left.min() >= 0 and left.max() <= 1 and torch.equal(disp, disp.round()) and disp.max() <= 10
    xr = torch.arange(64).view(1, 1, 1, 64) - disp.long()
    idx = xr.clamp(min=0)
    visible = (xr >= 0) & (torch.gather(disp_r, 3, idx) == disp)
    assert visible.float().mean() > 0.6
    warped = torch.gather(right, 3, idx.expand(-1, 3, -1, -1))
    assert torch.equal(warped * visible, left * visible)
    again = stereo.synthetic_stereo(4, 32, 64, seed=1)
    assert all(torch.equal(a, b) for a, b in zip((left, right, disp), again))
    assert not torch.equal(stereo.synthetic_stereo(4, 32, 64, seed=2)[0], left)


def test_road_scenes_carry_a_monocular_cue():
    ground = stereo.ground_disparity(128, 38, horizon=0.375)
    assert ground[:48].max() == 1 and ground[-1] == 38 and (np.diff(ground) >= 0).all()
    disp = stereo.synthetic_stereo(8, 128, 256, seed=0)[2]
    assert disp.min() >= 1 and disp[:, 0, -8:].mean() > 4 * disp[:, 0, :16].mean()  # near below, far above


def test_stereo_tensor_dataset_normalises_and_checks_range():
    left = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    ds = stereo.StereoTensorDataset(left, left, torch.zeros(2, 1, 4, 4))
    assert len(ds) == 2 and ds[0][0].max() == 1.0 and len(ds[1]) == 3
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stereo.StereoTensorDataset(left.float(), left.float(), torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="128 must divide"):
        stereo.synthetic_dataset(2, 100, 256)


def test_middlebury_motorcycle_loads_offline_with_scaled_disparity_and_mask():
    left, right, disp, valid = stereo.motorcycle(128, 256)
    assert left.shape == (1, 3, 128, 256) and disp.shape == valid.shape == (1, 1, 128, 256)
    assert valid.dtype == torch.bool and 0.5 < valid.float().mean() < 1 and (disp[~valid] == 0).all()
    assert 1 < disp[valid].min() and disp.max() < 0.3 * 256
    # the ground truth explains the pair far better than no disparity at all
    err = lambda d: ((reconstruct_left(right, d / 256) - left).abs().mean(1, keepdim=True)[valid]).mean()  # noqa: E731
    assert err(disp) < 0.5 * err(torch.zeros_like(disp))
    with pytest.raises(ValueError, match="128 must divide"):
        stereo.motorcycle(250, 384)


def test_kitti_raw_file_list_loads_real_pngs(tmp_path):
    file_list = write_kitti_raw(tmp_path, n=3)
    ds = stereo.KittiStereo(file_list, root=tmp_path, height=128, width=256)
    assert len(ds) == 3
    left, right = next(iter(DataLoader(ds, batch_size=2)))
    assert left.shape == right.shape == (2, 3, 128, 256) and 0 <= left.min() and left.max() <= 1
    assert stereo.KittiStereo("train_files.txt", root=tmp_path, height=128, width=128)[2][0].shape == (3, 128, 128)


def test_kitti_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="raw_data.php") as info:
        stereo.KittiStereo("list.txt", root=tmp_path / "nowhere")
    assert "nowhere" in str(info.value) and "image_02" in str(info.value)
    file_list = write_kitti_raw(tmp_path, n=3)
    (tmp_path / "2011_09_26/2011_09_26_drive_0001_sync/image_03/data/0000000001.png").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"line 2: .*image_03/data/0000000001.png"):
        stereo.KittiStereo(file_list, root=tmp_path, height=128, width=256)
    with pytest.raises(ValueError, match="128 must divide"):
        stereo.KittiStereo(file_list, root=tmp_path, height=100, width=256)


def test_kitti_pair_of_different_sizes_names_both_files(tmp_path):
    file_list = write_kitti_raw(tmp_path, n=1, size=(40, 130), right_size=(40, 120))
    ds = stereo.KittiStereo(file_list, root=tmp_path, height=128, width=256)
    pattern = r"image_02/data/0000000000.png is 130x40.*image_03/data/0000000000.png is 120x40"
    with pytest.raises(ValueError, match=pattern):
        ds[0]


def test_kitti2015_ground_truth_is_uint16_over_256_with_zero_invalid(tmp_path):
    written = write_kitti2015(tmp_path, n=2)
    gt = stereo.read_kitti_disparity(tmp_path / "training/disp_noc_0/000001_10.png")
    assert gt.dtype == np.float32 and np.array_equal(gt, written[1])
    ds = stereo.Kitti2015Stereo(tmp_path, height=128, width=256)
    left, right, disp = ds[0]
    assert len(ds) == 2 and left.shape == (3, 128, 256) and disp.shape == (1, 40, 130)
    assert np.array_equal(disp[0].numpy(), written[0]) and (disp == 0).any()
    with pytest.raises(DatasetNotFoundError, match="eval_scene_flow"):
        stereo.Kitti2015Stereo(tmp_path / "empty")
