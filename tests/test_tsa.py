"""TSA-Net and Plain-Net: tube masks against hand-made tables, the attention's limits (an
all-true mask is a non-local block over the whole map, an all-false one is the plain network),
parameter counts, the motion tube, the heads, the official checkpoint import, FR-FS end to end."""

import numpy as np
import pytest
import torch

from aqa.models.tsa import TSANet, TubeSelfAttention, fill_convex, tube_mask


def test_fill_convex_includes_the_edges_and_truncates_vertices():
    m = fill_convex(np.array([[3.9, 3.2], [10.5, 3.0], [10.0, 10.9], [3.0, 10.0]]), 14, 14)
    assert m.sum() == 64 and m[3:11, 3:11].all()  # cells 3..10 on both axes
    tri = fill_convex(np.array([[0, 0], [4, 0], [0, 4], [0, 4]]), 6, 6)
    assert tri.astype(int).tolist()[:5] == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0],
                                            [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0],
                                            [1, 0, 0, 0, 0, 0]]
    assert fill_convex(np.array([[2, 5]] * 4), 6, 6).sum() == 1  # a point


def test_tube_mask_ors_groups_of_four_frames():
    boxes = np.zeros((32, 8))
    boxes[:] = [0, 0, 45, 0, 45, 25, 0, 25]   # cell (0, 0) .. (0.98, 0.97) -> cell 0,0 only
    boxes[5] = [320, 180, 365, 180, 365, 205, 320, 205]  # frame 5: cell (7, 7) (x/45.7, y/25.7)
    mask = tube_mask(boxes, starts=(0, 16), clip_len=16, t_ratio=4)
    assert mask.shape == (8, 14, 14)
    assert mask[1, 7, 7] and not mask[0, 7, 7] and not mask[2, 7, 7]  # frames 4-7 only
    assert all(mask[t, 0, 0] for t in range(8) if t != 1) and mask[1, 0, 0]


def nonlocal_full(tsa, x):
    b, c = x.shape[:2]
    flat = x.reshape(b, c, -1)
    return torch.cat([tsa.block(flat[i:i + 1]) for i in range(b)]).reshape(x.shape)


def test_all_true_mask_is_a_non_local_block_over_the_whole_map():
    torch.manual_seed(0)
    tsa = TubeSelfAttention(8).eval()
    with torch.no_grad():
        tsa.W[1].weight.normal_()
        tsa.W[1].bias.normal_()
        tsa.W[1].running_var.fill_(2.0)
    x = torch.randn(2, 8, 4, 3, 3)
    with torch.no_grad():
        out = tsa(x, torch.ones(2, 4, 3, 3, dtype=torch.bool))
        assert torch.allclose(out, nonlocal_full(tsa, x), atol=1e-5)
        assert not torch.allclose(out, x)
        assert torch.equal(tsa(x, torch.zeros(2, 4, 3, 3, dtype=torch.bool)), x)


def test_zero_initialised_bn_makes_it_start_as_the_identity():
    tsa = TubeSelfAttention(8).eval()
    x = torch.randn(1, 8, 4, 3, 3)
    with torch.no_grad():
        assert torch.allclose(tsa(x, torch.ones(1, 4, 3, 3, dtype=torch.bool)), x)


def test_a_batch_without_any_tube_still_reaches_every_attention_parameter():
    """DDP stops on parameters that got no gradient; a batch whose tubes are all empty must
    still give the block's parameters a (zero) gradient, and leave the features unchanged."""
    tsa = TubeSelfAttention(8).train()
    x = torch.randn(2, 8, 4, 3, 3, requires_grad=True)
    out = tsa(x, torch.zeros(2, 4, 3, 3, dtype=torch.bool))
    assert torch.equal(out.detach(), x.detach())
    out.sum().backward()
    assert all(p.grad is not None and not p.grad.any() for p in tsa.parameters())


def rel(a, b):
    """Relative difference (random-init I3D features are tiny, so absolute tolerances mislead)."""
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def i3d():
    from aqa.models.i3d import I3D
    torch.manual_seed(0)
    return I3D(family="piergiaj", num_classes=400).eval()


def test_all_false_mask_equals_the_plain_network(i3d):
    video = torch.randint(0, 256, (1, 3, 32, 32, 32), dtype=torch.uint8)
    tsa_net = TSANet(i3d, use_tsa=True, starts=(0, 16)).eval()
    plain = TSANet(i3d, use_tsa=False, starts=(0, 16)).eval()
    with torch.no_grad():
        tsa_net.tsa.W[1].weight.fill_(1.0)  # not the identity any more where the mask is set
        a = plain(video)
        h = i3d.features_at(video[:, :, :16], "MaxPool3d_4a_3x3").shape  # (1, 480, 4, 2, 2)
        mask_off = torch.zeros(1, 2 * h[2], h[3], h[4], dtype=torch.bool)
        b = tsa_net(video, mask_off)
        c = tsa_net(video, torch.ones_like(mask_off))
    assert a.shape == (1, 1024)
    assert rel(a, b) < 1e-5 and rel(a, c) > 1e-3
    # the plain network is the per-clip I3D feature averaged over clips
    with torch.no_grad():
        per_clip = torch.stack([i3d(video[:, :, s:s + 16]) for s in (0, 16)], 1).mean(1)
    assert rel(a, per_clip) < 1e-5


def test_official_clip_order_interleaves_clips(i3d):
    video = torch.randint(0, 256, (1, 3, 32, 32, 32), dtype=torch.uint8)
    off = torch.zeros(1, 8, 2, 2, dtype=torch.bool)  # the attention is the identity here
    with torch.no_grad():
        plain = TSANet(i3d, use_tsa=False, starts=(0, 16))(video)
        fixed = TSANet(i3d, use_tsa=True, starts=(0, 16)).eval()(video, off)
        bug = TSANet(i3d, use_tsa=True, starts=(0, 16), clip_order_bug=True).eval()(video, off)
    assert rel(fixed, plain) < 1e-5 and rel(fixed, bug) > 1e-3


# ------------------------------------------------------------------ the registered methods

from aqa.config import build_run_config  # noqa: E402
from aqa.errors import CheckpointError, ConfigError  # noqa: E402
from aqa.models.base import count_parameters  # noqa: E402
from aqa.models.tsa import TSA, TSAHead  # noqa: E402
from aqa.registry import METHODS  # noqa: E402
from aqa.models.tubes import motion_boxes, swap_first_corners  # noqa: E402

# A random-init I3D on 32-pixel, 8-frame clips: stage 1 gives (B, 480, 2, 2, 2) per clip.
SMALL = ["backbone.weights=", "data.num_frames=16", "data.frame_size=32", "model.clip_len=8",
         "model.clip_starts=0,8"]


def method(name="tsa", dataset="frfs", *extra):
    cfg = build_run_config(name, dataset, overrides=SMALL + list(extra))
    return METHODS.get(name)(cfg)


def test_parameter_counts():
    # g and W.0: Conv1d(480, 480, 1) with bias; W.1: BatchNorm1d(480) scale and shift
    assert count_parameters(TubeSelfAttention(480)) == 2 * (480 * 480 + 480) + 2 * 480 == 462_720
    assert count_parameters(TSAHead(1024, 1)) == 262_400 + 32_896 + 129  # the FR-FS MLP_block
    cfg = build_run_config("tsa", "frfs", overrides=["backbone.weights="])
    tsa = TSA(cfg)
    sizes = tsa.module_sizes(tsa.build_model())
    assert sizes == {"backbone": 12_697_264, "tsa": 462_720, "head": 295_425,
                     "trainable": 13_455_409, "total": 13_455_409}
    plain = METHODS.get("plain")(build_run_config("plain", "frfs", overrides=["backbone.weights="]))
    assert plain.module_sizes(plain.build_model())["total"] == 12_697_264 + 295_425


def test_paper_defaults_and_head_choice():
    cfg = build_run_config("tsa", "frfs")
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.train.epochs,
            cfg.train.batch_size, cfg.train.best_metric) == ("adam", 1e-4, 1e-5, 20, 4, "accuracy")
    assert (cfg.data.num_frames, cfg.data.frame_size, cfg.data.pipeline, cfg.data.hflip) == \
        (103, 224, "musdl", False)
    assert (cfg.backbone.family, cfg.backbone.input_norm) == ("piergiaj", "imagenet")
    assert cfg.model.clip_starts == [0, 16, 32, 48, 64, 80, 87] and cfg.model.swap_first_corners
    assert TSA(cfg).head_kind == "bce"
    mtl = build_run_config("tsa", "mtl_aqa")
    assert TSA(mtl).head_kind == "usdl" and mtl.train.best_metric == "rho"
    with pytest.raises(ConfigError, match="best_metric=accuracy does not fit the usdl head"):
        TSA(build_run_config("tsa", "frfs", overrides=["model.head=usdl"]))
    with pytest.raises(ConfigError, match="model.tube='box' is not one of"):
        TSA(build_run_config("tsa", "frfs", overrides=["model.tube=box"]))


def test_forward_shapes_and_the_mask_grid_follows_the_frame_size():
    m = method()
    torch.manual_seed(0)
    model = m.build_model().eval()
    video = torch.randint(0, 256, (2, 3, 16, 32, 32), dtype=torch.uint8)
    box = torch.tensor([0.0, 0, 320, 0, 320, 180, 0, 180])  # the top-left quarter of 640x360
    batch = {"video": video, "boxes": box.expand(2, 16, 8).clone()}
    tubes, sources = m.tubes(batch)
    assert sources == ["boxes", "boxes"]
    with torch.no_grad():
        assert model.features(video, tubes=tubes).shape == (2, 1024)
        assert model(video, tubes=tubes).shape == (2, 1)
    assert model.masks(tubes, t1=2, grid=(2, 2), device="cpu").shape == (2, 4, 2, 2)  # 32 px
    mask = model.masks(tubes, t1=2, grid=(4, 4), device="cpu")  # a 64-pixel stage-1 map
    assert mask.shape == (2, 4, 4, 4) and mask[0, 0].int().tolist() == \
        [[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]]  # corners 320/160=2, 180/90=2
    big = model.masks(tubes, t1=4, grid=(14, 14), device="cpu")  # 224 px: the official 14x14
    assert big.shape == (2, 8, 14, 14) and big[0, 0].sum() == 8 * 8  # cells 0..7 on both axes
    with pytest.raises(ConfigError, match="does not fit the feature map"):
        model(video, mask=torch.ones(2, 4, 4, 4, dtype=torch.bool))


def test_first_frame_corners_are_swapped_as_the_official_loader_does():
    crossed = np.array([[0, 0, 630, 0, 0, 350, 630, 350]] * 4, dtype=np.float64)  # 3 and 4 crossed
    fixed = swap_first_corners(crossed)
    assert fixed[0].tolist() == [0, 0, 630, 0, 630, 350, 0, 350] and (fixed[1:] == crossed[1:]).all()
    full = tube_mask(fixed, starts=(0,), clip_len=4, t_ratio=4)[0]  # frames 0-3 OR-ed: the bow tie
    bow = tube_mask(crossed[:1].repeat(4, 0), starts=(0,), clip_len=4, t_ratio=4)[0]
    assert full.sum() > bow.sum()
    on, off = method(), method("tsa", "frfs", "model.swap_first_corners=false")
    batch = {"video": torch.zeros(1, 3, 16, 64, 64, dtype=torch.uint8),
             "boxes": torch.from_numpy(np.concatenate([crossed] * 4)).float()[None]}
    assert on.tubes(batch)[0][0][0][0].tolist() == fixed[0].tolist()
    assert off.tubes(batch)[0][0][0][0].tolist() == crossed[0].tolist()


def moving_square(frames=24, size=64, side=10):
    """A bright square moving along the top-left to centre diagonal on black: (T, H, W, 3)."""
    video = np.zeros((frames, size, size, 3), np.uint8)
    for t in range(frames):
        p = 4 + t  # top-left corner at (4, 4) .. (27, 27)
        video[t, p:p + side, p:p + side] = 230
    return video


def test_motion_tube_follows_a_moving_square_and_not_the_far_corner():
    video = moving_square()
    corners, found = motion_boxes(video)
    assert found and corners.shape == (24, 8)
    again, _ = motion_boxes(video)
    assert np.array_equal(corners, again)  # deterministic
    mask = tube_mask(corners, starts=(0, 8, 16), clip_len=8, t_ratio=4, grid=(8, 8),
                     frame_size=(64, 64))  # (6, 8, 8): 8-pixel cells
    for t in range(24):
        p = 4 + t
        square = np.zeros((8, 8), bool)
        square[p // 8:(p + 9) // 8 + 1, p // 8:(p + 9) // 8 + 1] = True
        assert mask[t // 4][square].all(), t  # the square's cells in that frame's time step
    assert not mask[:, 7, 7].any() and not mask[:, 0, 7].any() and not mask[:, 7, 0].any()
    still, found = motion_boxes(np.full((8, 32, 48, 3), 90, np.uint8))
    assert not found and still[0].tolist() == [0, 0, 47, 0, 47, 31, 0, 31]  # the whole frame


def test_tube_sources_and_score_notes():
    m = method("tsa", "frfs")
    torch.manual_seed(0)
    model = m.build_model().eval()
    video = torch.from_numpy(moving_square(16, size=32, side=6)).permute(3, 0, 1, 2)[None]
    clip = {"video": video, "id": ["x"]}
    assert m.tubes(clip)[1] == ["motion"]
    assert m.tubes({**clip, "tube": "full"})[1] == ["full"]
    assert m.tubes({**clip, "boxes": torch.zeros(1, 16, 8)})[1] == ["motion"]  # all-zero boxes
    with pytest.raises(ConfigError, match="has no boxes"):
        m.tubes({**clip, "tube": "boxes"})
    still = {"video": torch.full((1, 3, 16, 32, 32), 7, dtype=torch.uint8), "id": ["s"]}
    assert m.tubes(still)[1] == ["still"]
    with torch.no_grad():
        out = m.score_clip(model, clip)
    assert 0 <= out["score"] <= 1 and out["distribution"] == pytest.approx([1 - out["score"], out["score"]])
    assert out["notes"][0].startswith("the score is the fall probability")
    assert out["notes"][0].endswith("verdict fall" if out["score"] > 0.5 else "verdict no fall")
    assert out["notes"][1] == "tube: estimated from motion (the clip has no athlete boxes)"
    plain = method("plain", "frfs")
    with torch.no_grad():
        assert plain.score_clip(plain.build_model().eval(), clip)["notes"][-1] == \
            "Plain-Net: no tube attention"


def test_bce_loss_is_the_official_bce_on_the_sigmoid_and_metrics_are_accuracy():
    m = method()
    torch.manual_seed(0)
    model = m.build_model()
    batch = m.example_batch(2)
    batch["video"] = batch["video"][:, :, :16, :32, :32]
    with torch.no_grad():
        logits = model(batch["video"], tubes=m.tubes(batch)[0])[:, 0]
    loss = m.losses(model, batch)["loss"]
    official = torch.nn.BCELoss()(torch.sigmoid(logits), batch["label"])
    assert loss.item() == pytest.approx(official.item(), rel=1e-4)
    assert m.eval_metrics([0.9, 0.2, 0.6, 0.4], [1.0, 0.0, 0.0, 0.0]) == \
        {"accuracy": 0.75, "rho": pytest.approx(0.7746, abs=1e-4)}


def test_usdl_head_training_step_reaches_the_attention():
    m = method("tsa", "mtl_aqa", "model.tube=full")
    torch.manual_seed(0)
    model = m.build_model()
    m.set_train_mode(model)
    batch = {"video": torch.randint(0, 256, (2, 3, 16, 32, 32), dtype=torch.uint8),
             "score": torch.tensor([20.9, 98.0]), "difficulty": torch.ones(2), "id": ["a", "b"]}
    loss = m.losses(model, batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss) and model.head.mlp[4].out_features == 101
    assert model.tsa.W[1].weight.grad.abs().sum() > 0  # the zero-initialised BN scale learns
    assert model.backbone.Conv3d_1a_7x7.conv3d.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        pred = m.predict(model, batch)
    assert pred.shape == (2,) and torch.allclose(pred * 100 / 104.5, (pred * 100 / 104.5).round(),
                                                 atol=1e-3)
    assert set(m.eval_metrics([1.0, 2.0, 3.0], [1.0, 3.0, 2.0])) == {"rho", "l2", "rl2"}


# ------------------------------------------------------------------ FR-FS end to end, import

FIXTURE = SMALL + ["data.pipeline=square", "data.disk_cache=off"]


def frfs_tree(root, keys=("a", "b", "c", "d"), test=("e", "f"), frames=16):
    """A tiny FR-FS folder: 64x36 jpg frames with a square drifting right, labels alternating,
    SiamMask-style boxes in 640x360 pixels following the square."""
    import json
    from PIL import Image
    root.mkdir(parents=True)
    (root / "Train.csv").write_text("key,label\n" + "".join(f"{k},{i % 2}\n" for i, k in enumerate(keys)))
    (root / "Test.csv").write_text("key,label\n" + "".join(f"{k},{i % 2}\n" for i, k in enumerate(test)))
    boxes = {}
    for k in keys + test:
        (root / "Images" / k).mkdir(parents=True)
        rows = []
        for t in range(frames):
            img = np.zeros((36, 64, 3), np.uint8)
            x = 4 + 2 * t
            img[10:22, x:x + 10] = 200
            Image.fromarray(img).save(root / "Images" / k / f"{t:05d}.jpg")
            rows.append([x * 10, 100, (x + 10) * 10, 100, (x + 10) * 10, 220, x * 10, 220])
        rows[0][4:8] = rows[0][6:8] + rows[0][4:6]  # frame 0: corners 3 and 4 the other way round
        boxes[k] = rows
    (root / "FRFS_Boxes.json").write_text(json.dumps(boxes))
    return root


def write_clip(path, frames=20):
    import av
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for t in range(frames):
            img = np.zeros((48, 64, 3), np.uint8)
            img[14:26, 2 + 2 * t:12 + 2 * t] = 220
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = t
            c.mux(s.encode(f))
        c.mux(s.encode())
    return path


def official_file(path, model, tsa=True, accuracy=0.9423):
    """An official-layout TSA-Net best.pt of ``model``'s weights (DataParallel prefixes)."""
    sd = model.state_dict()
    layers = {"mlp.0": "layer1", "mlp.2": "layer2", "mlp.4": "layer3"}
    raw = {"epoch": 7, "rho_best": np.float64(accuracy),
           "i3d": {f"module.{k[9:]}": v for k, v in sd.items() if k.startswith("backbone.")},
           "evaluator": {f"module.evaluator.{layers[k[5:10]]}.{k.split('.')[-1]}": v
                         for k, v in sd.items() if k.startswith("head.")},
           "TSA_module": {f"NL_1D.{k[4:]}": v for k, v in sd.items() if k.startswith("tsa.")}
           if tsa else None,
           "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]}}
    torch.save(raw, path)
    return path


def test_official_checkpoint_imports_and_gives_the_same_output(tmp_path, runs_dir):
    from aqa import cli
    from aqa.importers import import_checkpoint
    from aqa.scoring import Scorer
    from aqa.train.checkpoint import load_checkpoint
    root = frfs_tree(tmp_path / "FRFS")
    m = method("tsa", "frfs", "backbone.num_classes=157")
    torch.manual_seed(1)
    model = m.build_model().eval()
    with torch.no_grad():  # not the identity: the attention's output counts
        model.tsa.W[1].weight.normal_()
        model.tsa.W[1].running_mean.normal_()
    src = official_file(tmp_path / "best.pt", model)
    out = import_checkpoint(src, None, runs_dir, data_root=str(root), overrides=FIXTURE)
    state = load_checkpoint(out["checkpoint"])
    assert state["method"] == "tsa" and state["metrics"] == {"accuracy": pytest.approx(0.9423)}
    assert state["config"]["backbone"]["num_classes"] == 157 and state["epoch"] == 7
    scorer = Scorer.from_checkpoint(out["checkpoint"])
    video = torch.randint(0, 256, (1, 3, 16, 32, 32), dtype=torch.uint8)
    batch = {"video": video, "boxes": torch.rand(1, 16, 8) * 300}
    with torch.no_grad():
        direct = model(video, tubes=m.tubes(batch)[0])
        imported = scorer.model(video, tubes=scorer.method.tubes(batch)[0])
    assert torch.equal(direct, imported)
    # aqa eval reports accuracy on the FR-FS test split; aqa score gives a fall probability
    assert cli.main(["eval", out["run_id"], "--json"]) == 0
    clip = write_clip(tmp_path / "jump.mp4")
    result = scorer.score(clip)
    assert 0 <= result.score <= 1 and any("estimated from motion" in n for n in result.notes)
    assert any(n == "tube: the whole frame (as asked)" for n in scorer.score(clip, tube="full").notes)
    # a Plain-Net file (TSA_module None) is a plain run; asking for tsa is refused
    plain = official_file(tmp_path / "plain.pt", model, tsa=False)
    with pytest.raises(CheckpointError, match="import it with --method plain"):
        import_checkpoint(plain, "tsa", runs_dir, overrides=FIXTURE)
    bad = tmp_path / "bad.pt"
    torch.save({"i3d": {}, "evaluator": {"evaluator.layer9.weight": torch.zeros(1)}}, bad)
    with pytest.raises(CheckpointError, match="unexpected evaluator key"):
        import_checkpoint(bad, None, runs_dir, overrides=FIXTURE)


def test_an_official_file_with_a_distribution_head_imports_as_usdl(tmp_path, runs_dir):
    from aqa.importers import import_checkpoint
    from aqa.train.checkpoint import load_checkpoint
    m = method("tsa", "mtl_aqa", "model.head=usdl", "backbone.num_classes=157")
    src = official_file(tmp_path / "best.pt", m.build_model(), accuracy=0.91)
    out = import_checkpoint(src, "tsa", runs_dir, overrides=FIXTURE)
    state = load_checkpoint(out["checkpoint"])
    assert state["config"]["dataset"] == "mtl_aqa" and state["config"]["model"]["head"] == "usdl"
    assert state["model"]["head.mlp.4.weight"].shape == (101, 128)
    assert state["metrics"] == {"rho": pytest.approx(0.91)} and out["notes"]  # no --data-root


def test_eval_output_of_an_accuracy_run(tmp_path, runs_dir, capsys):
    import json
    from aqa import cli
    from aqa.importers import import_checkpoint
    root = frfs_tree(tmp_path / "FRFS")
    m = method("plain", "frfs")
    torch.manual_seed(2)
    src = official_file(tmp_path / "plain.pt", m.build_model(), tsa=False)
    out = import_checkpoint(src, None, runs_dir, data_root=str(root), overrides=FIXTURE)
    assert cli.main(["eval", out["run_id"], "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert set(metrics) == {"accuracy", "rho"} and metrics["accuracy"] in (0.0, 0.5, 1.0)
    assert cli.main(["eval", out["run_id"]]) == 0
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_train_tsa_on_frfs_end_to_end(tmp_path, runs_dir):
    from aqa import cli
    from aqa.runs.events import read_events
    from aqa.runs.store import find_run
    from aqa.scoring import Scorer
    root = frfs_tree(tmp_path / "FRFS")
    sets = [a for s in FIXTURE + ["train.epochs=1", "train.batch_size=2", "train.device=cpu",
                                  "train.log_every=1", "train.heartbeat_s=1"] for a in ("--set", s)]
    assert cli.main(["train", "--method", "tsa", "--dataset", "frfs", "--data-root", str(root),
                     *sets, "--follow"]) == 0
    run = next(p for p in runs_dir.iterdir() if p.is_dir() and (p / "run.json").exists())
    assert find_run(runs_dir, run.name) == run
    events = read_events(run / "events.jsonl")
    test_metrics = {e["name"]: e["value"] for e in events
                    if e["type"] == "metric" and e.get("split") == "test"}
    assert {"accuracy", "rho"} <= set(test_metrics) and test_metrics["accuracy"] in (0.0, 0.5, 1.0)
    assert events[-1]["status"] == "finished"
    preds = (run / "predictions" / "test_epoch_001.csv").read_text().splitlines()
    assert preds[0] == "id,true,pred,pred_class"  # a classification: the predicted class too
    assert all(int(r.split(",")[3]) == int(float(r.split(",")[2]) > 0.5) for r in preds[1:])
    result = Scorer.from_checkpoint(run / "checkpoints" / "best.pt").score(
        write_clip(tmp_path / "jump.mp4"))
    assert result.method == "tsa" and result.notes[-1].startswith("tube: estimated from motion")
