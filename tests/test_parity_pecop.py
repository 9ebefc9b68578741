"""Parity of PECoP and of the I3D weight files with the official code's own output.

The inputs come from ``tests/parity_pecop_inputs.py`` (seeded conditioned weights written in the
official layouts and serialisations, a moving-frames clip, a PD4T sample in PECoP's layout); the
tests rebuild them, run our user-facing path (``--set backbone.weights=FILE``, the pd4t dataset
wrapped by the pecop method, the pecop losses and optimizer) and compare with the literals below.

Reference numbers (docs/parity.md, "PECoP and the I3D weight files", says how to regenerate):
produced on CPU (torch 2.14.1, one thread) by two runner scripts outside this repository that
write the inputs with ``parity_pecop_inputs.write_weights`` / ``write_pd4t`` and then
- REF_I3D: import ``models/i3d.py`` of yuxumin/CoRe @f7881a9 (hassony2's 2018 copy), ``src/i3dpt.py``
  of hassony2/kinetics_i3d_pytorch @786fbae (HEAD: BN eps 1e-3), ``models/i3d.py`` of
  nzl-thu/MUSDL @205868a (piergiaj's InceptionI3d) and ``models/i3d_adapter.py`` of
  Plrbear/PECoP @af79e55; build each, ``load_state_dict(torch.load(file))`` strictly, eval mode,
  and call it on ``imagenet_input(clip(16))`` (``clip(32)`` for PECoP): the avg-pooled feature
  (CoRe: ``forward``; MUSDL: ``extract_features``; HEAD: an ``avg_pool`` hook) and the logits
  (``conv3d_0c_1x1`` / ``logits`` on it, mean over time). ``core_from_piergiaj``: CoRe's module
  given the piergiaj file renamed by docs/methods.md, Backbones's table (written out in the runner).
- REF_VSPP: import PECoP @af79e55 ``train.py`` (``VSPP``; tensorboardX, ptflops, skimage stubbed;
  ``args.pretrained_i3d_weight`` = the model_rgb.pth above) and ``datasets/ucf101.py``
  (``PECoP_SSL`` with ``train.py``'s torch_videovision @785a810 transforms, fr=3, clip_len=32);
  ``random.randint``/``random.random`` scripted to the draws in ``draws``; ``ds[0]`` -> the clip
  (its uint8 recovered exactly and hashed; the files ``cv2.imread`` read); then ``VSPP`` loaded
  strictly from the gait_adapter file (``module.`` stripped), ``model.train()``,
  ``torch.manual_seed(7)``, forward, CE(pace) + CE(segment), ``SGD(model.parameters(), lr=0.01,
  momentum=0.9, weight_decay=1e-4)``, one step; summaries of the weights after it. ``official``
  is that as is; ``corrected`` converts the frames to RGB after ``cv2.imread`` and puts the I3D's
  BatchNorm layers in eval mode (what our defaults do); ``bgr_only`` does the latter only.
"""

import os
from dataclasses import replace

import pytest
import torch

import parity_pecop_inputs as P
from aqa.config import build_run_config
from aqa.errors import CheckpointError
from aqa.registry import BACKBONES, DATASETS, METHODS


def assert_matches(t: torch.Tensor, ref: dict, rel: float = 1e-5) -> None:
    """``t`` equals the official vector whose summary is ``ref`` to ``rel`` (relative to its
    norm): sum, norm, the first values and two fixed random projections."""
    got, scale = P.summary(t), ref["norm"]
    assert got["norm"] == pytest.approx(ref["norm"], rel=rel)
    assert got["sum"] == pytest.approx(ref["sum"], abs=rel * scale * len(t.flatten()) ** 0.5)
    for a, b in zip(got["first"] + got["probes"], ref["first"] + ref["probes"]):
        assert a == pytest.approx(b, abs=rel * scale), (got, ref)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return P.write_weights(tmp_path_factory.mktemp("official"))


def backbone(method: str, weights, *sets: str):
    """The backbone a run builds from ``--set backbone.weights=FILE`` (plus ``sets``)."""
    cfg = build_run_config(method, "synthetic", overrides=[f"backbone.weights={weights}", *sets])
    return BACKBONES.get("i3d").build(cfg.backbone).eval()


# ------------------------------------------------------------------------- I3D weight files

@pytest.mark.parametrize("file, family, classes, ref", [
    ("hassony2", "hassony2", 400, "core_hassony2"),  # model_rgb.pth as CoRe/TPT/PECoP run it
    ("hassony2", "piergiaj", 400, "head_hassony2"),  # = hassony2 HEAD (BN eps 1e-3) exactly
    ("piergiaj", "piergiaj", 157, "musdl_piergiaj"),  # rgb_i3d_pretrained.pt as MUSDL/TSA run it
    ("piergiaj", "hassony2", 157, "core_from_piergiaj"),  # = CoRe's module on the renamed keys
])
def test_i3d_weight_file_features_equal_the_official_module(files, file, family, classes, ref):
    net = backbone("core", files[file], f"backbone.family={family}", f"backbone.num_classes={classes}",
                   "backbone.input_norm=imagenet")
    video = P.clip(16)  # uint8; the backbone normalises it as ClipToTensor + Normalize
    with torch.no_grad():
        assert_matches(net.pool(net.features_at(video)), REF_I3D[f"{ref}_feature"])
        if f"{ref}_logits" in REF_I3D:
            assert_matches(net(video, logits=True), REF_I3D[f"{ref}_logits"])


# ------------------------------------------------------------------------- PECoP checkpoints

def test_adapter_checkpoint_features_equal_the_official_adapted_i3d(files, caplog):
    net = backbone("pecop", files["pecop"])  # module. prefix, cuda:0 storages, heads dropped
    assert net.adapters and "carries PECoP 3D adapters" not in caplog.text  # aqa.log
    with torch.no_grad():
        assert_matches(net.pool(net.features_at(P.clip(32))), REF_I3D["pecop_feature"])


def test_adapter_checkpoint_export_round_trip(files, tmp_path):
    from aqa.cli import main
    from aqa.config import to_dict
    from aqa.train.checkpoint import save_checkpoint

    cfg = build_run_config("pecop", "pd4t", overrides=[f"backbone.weights={files['pecop']}"])
    model = METHODS.get("pecop")(cfg).build_model()  # backbone and both heads from the file
    save_checkpoint(tmp_path / "best.pt", {"method": "pecop", "config": to_dict(cfg),
                                           "model": model.state_dict(), "epoch": 8, "step": 0})
    assert main(["export-backbone", str(tmp_path / "best.pt"), "-o", str(tmp_path / "gait.pth.tar"),
                 "--official"]) == 0
    official = torch.load(files["pecop"], map_location="cpu", weights_only=True)
    exported = torch.load(tmp_path / "gait.pth.tar", weights_only=True)
    assert {f"module.{k}" for k in exported} == set(official)  # VSPP's keys, less DataParallel's
    assert all(torch.equal(exported[k[len("module."):]], v) for k, v in official.items())
    # and back: the exported file is a backbone.weights like the official one
    again = backbone("pecop", tmp_path / "gait.pth.tar")
    first = backbone("pecop", files["pecop"])
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), first.state_dict().values()))


def test_import_checkpoint_makes_a_pecop_run_to_fine_tune_from(files, runs_dir):
    """`aqa import-checkpoint gait_adapterNN.pth.tar` (detected) -> a pecop run holding the
    adapted I3D and both heads; `backbone.weights=<run id>` then gives the official backbone."""
    from aqa.importers import import_checkpoint
    from aqa.runs import index

    result = import_checkpoint(files["pecop"], None, runs_dir)
    saved = torch.load(result["checkpoint"], weights_only=True)
    assert saved["method"] == "pecop" and saved["config"]["backbone"]["weights"] == ""
    cfg = build_run_config("pecop", "pd4t", overrides=[f"backbone.weights={files['pecop']}"])
    direct = METHODS.get("pecop")(cfg).build_model().state_dict()
    assert saved["model"].keys() == direct.keys()
    assert all(torch.equal(saved["model"][k], v) for k, v in direct.items())
    assert [r["id"] for r in index.list_runs(runs_dir)] == [result["run_id"]]
    from_run = backbone("usdl", result["run_id"], "backbone.family=hassony2")
    from_file = backbone("usdl", files["pecop"], "backbone.family=hassony2")
    assert all(torch.equal(a, b) for a, b in zip(from_run.state_dict().values(),
                                                 from_file.state_dict().values()))


def test_a_malicious_adapter_checkpoint_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"module.model.conv3d_1a_7x7.conv3d.weight": Evil()}, tmp_path / "gait_adapter01.pth.tar")
    with pytest.raises(CheckpointError, match="gait_adapter01.pth.tar"):
        backbone("pecop", tmp_path / "gait_adapter01.pth.tar")
    cfg = build_run_config("pecop", "pd4t", overrides=[
        f"backbone.weights={tmp_path / 'gait_adapter01.pth.tar'}"])
    with pytest.raises(CheckpointError, match="gait_adapter01.pth.tar"):
        METHODS.get("pecop")(cfg).build_model()  # the pretext run: backbone, then the heads
    assert not marker.exists()


# ------------------------------------------------------------------------- VSPP (pretext)

class ScriptedRng:
    """Stands in for the dataset's numpy Generator: hands out the official run's draws, and
    checks that each is asked for over the official range (randint(a, b) is inclusive,
    Generator.integers(a, b + 1) is not)."""

    def __init__(self, official_draws):
        (_, _, rate), (_, _, segment), (_, (_, last_start), start), (_, _, flip), \
            (_, (_, x_room), x1), (_, (_, y_room), y1) = official_draws
        self.script = [("choice", ([1, 2, 4, 5],), rate),  # randint(1, 5) redrawn while == fr (3)
                       ("integers", (1, 5), segment), ("integers", (0, last_start), start - 1),
                       ("random", (), flip),  # torch_videovision: flip if random() < 0.5
                       ("integers", (0, y_room + 1), y1), ("integers", (0, x_room + 1), x1)]

    def _next(self, kind, args):
        want = self.script.pop(0)
        assert (kind, args) == want[:2], (kind, args, want)
        return want[2]

    def choice(self, a):
        return self._next("choice", ([int(x) for x in a],))

    def integers(self, low, high=None):
        return self._next("integers", (int(low), int(high)))

    def random(self):
        return self._next("random", ())


def vspp_config(root, files, *sets: str):
    cfg = build_run_config("pecop", "pd4t", overrides=[
        f"data.root={root}", f"backbone.weights={files['pecop']}", "model.fr=3", "train.batch_size=1",
        "data.disk_cache=off", *sets])
    return replace(cfg, data=DATASETS.get("pd4t").resolve(cfg.data, root))


def vspp_item(root, files, official_steps: bool):
    """Our pd4t + pecop training item for the official draws, and the frame files it read."""
    method = METHODS.get("pecop")(vspp_config(root, files, f"model.official_steps={official_steps}"))
    clips = DATASETS.get("pd4t").build(method.cfg.data, "train", train=True)
    data = method.wrap_dataset(clips, "train", clips)
    clips._rng = lambda i: ScriptedRng(REF_VSPP["official"]["draws"])
    read = []
    item_at = clips.item_at
    clips.item_at = lambda i, positions, rng: read.extend(positions) or item_at(i, positions, rng)
    item = data[0]
    return item, [p + 1 for p in read]  # 1-based file numbers, as img_{:05d}.jpg


@pytest.fixture(scope="module")
def pd4t(tmp_path_factory):
    return P.write_pd4t(tmp_path_factory.mktemp("pd4t"))


def test_vspp_clip_equals_the_official_loader(pd4t, files):
    item, read = vspp_item(pd4t, files, official_steps=True)
    ref = REF_VSPP["official"]
    assert read == ref["frames_read"]  # 118: one past the 117 usable frames, as PECoP reads it
    assert [int(item["pace"]), int(item["segment"])] == ref["label"] == [4, 2]
    video = item["video"]  # (3, 32, 224, 224) uint8 RGB
    assert video.shape == (3, 32, 224, 224) and video.dtype == torch.uint8
    assert P.clip_digest(video.flip(0)) == ref["digest"]  # official: BGR (cv2), never converted
    assert P.clip_digest(video) == REF_VSPP["corrected"]["digest"]  # frames converted to RGB
    # normalisation: what the backbone feeds its first layer with model.bgr on (official) / off
    net = METHODS.get("pecop")(vspp_config(pd4t, files, "backbone.weights=")).build_model()
    for flip, name in ((True, "official"), (False, "corrected")):
        x = net.backbone.normalize((video.flip(0) if flip else video)[None])[0]
        sums = [float(x[c].double().sum()) for c in range(3)]
        assert sums == pytest.approx(REF_VSPP[name]["channel_sums"], rel=1e-6)


def test_vspp_default_steps_are_the_correction(pd4t, files):
    _, read = vspp_item(pd4t, files, official_steps=False)
    # rate 5 in segment 3 (clip frames 16..24), fr 3 elsewhere, 117 usable frames: frame 16
    # would be 118 > 117 and wraps to 1; after the segment the step is fr (3), not 1
    assert read == [68 + 3 * k for k in range(16)] + [1, 6, 11, 16, 21, 26, 31, 36, 41] + \
        [44, 47, 50, 53, 56, 59, 62]
    assert read != REF_VSPP["official"]["frames_read"]


def official_name(name: str) -> str:
    """Our VSPP parameter name -> PECoP's (``backbone.`` is its ``model.``)."""
    return "model." + name[len("backbone."):] if name.startswith("backbone.") else name


@pytest.fixture
def one_thread():
    """One intra-op thread, as the official run: the step is then bit-identical (with more
    threads the gradient sums are reordered: about 1e-6 of the weights, inside the tolerance)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("flags, ref", [
    (["model.bgr=true", "model.update_frozen_bn=true"], "official"),
    (["model.bgr=true"], "bgr_only"),  # each flag on its own
    ([], "corrected"),  # the defaults: RGB, frozen BatchNorm statistics
])
def test_vspp_training_step_equals_the_official_step(pd4t, files, one_thread, flags, ref):
    from aqa.train.optim import build_optimizer, build_scheduler

    item, _ = vspp_item(pd4t, files, official_steps=True)
    want = REF_VSPP[ref]
    method = METHODS.get("pecop")(vspp_config(pd4t, files, *flags))
    model = method.build_model()  # backbone and heads from the gait_adapter file
    batch = {"video": item["video"][None], "pace": item["pace"][None], "segment": item["segment"][None]}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = build_optimizer(method.param_groups(model), method.cfg.optim)
    build_scheduler(opt, method.cfg.optim, method.cfg.train.epochs)  # epoch 0: lr 0.01
    method.set_train_mode(model)
    torch.manual_seed(7)  # the two dropout draws, as the official run
    losses = method.losses(model, batch)
    losses["loss"].backward()
    opt.step()
    for name, key in (("loss", "loss"), ("pace", "loss_p"), ("segment", "loss_s")):
        assert float(losses[name].detach()) == pytest.approx(want[key], rel=1e-5)
    after = {official_name(k): v for k, v in model.state_dict().items()}
    before = {official_name(k): v for k, v in before.items()}
    trainable = sorted(official_name(k) for k, p in model.named_parameters() if p.requires_grad)
    assert (len(trainable), sum(after[k].numel() for k in trainable)) == \
        (want["trainable"], want["trainable_numel"])
    delta = torch.cat([(after[k] - before[k]).double().flatten() for k in trainable])
    scale = float(torch.cat([after[k].double().flatten() for k in trainable]).norm())
    # the update's norm to 1e-5 of itself; its projection to 1e-5 of the weights' norm (a
    # relative L2 difference e of the weights after the step moves it by about e * scale)
    assert float(delta.norm()) == pytest.approx(want["delta_norm"], rel=1e-5)
    assert float(P.probes(delta.numel(), 1)[0] @ delta) == pytest.approx(
        want["delta_probe"], abs=1e-5 * scale)
    for k, v in want["tensor_sums"].items():
        assert float(after[k].double().norm()) == pytest.approx(want["tensor_norms"][k], rel=1e-5), k
        assert float(after[k].double().sum()) == pytest.approx(
            v, abs=1e-5 * want["tensor_norms"][k] * after[k].numel() ** 0.5), k
    means = [k for k in after if k.endswith("running_mean")]
    varis = [k for k in after if k.endswith("running_var")]
    changed = sum(not torch.equal(after[k], before[k]) for k in means + varis)
    assert changed == want["bn_changed"] == (114 if ref == "official" else 0)
    assert float(sum(after[k].double().sum() for k in means)) == pytest.approx(want["bn_mean_sum"], rel=1e-5)
    assert float(sum(after[k].double().sum() for k in varis)) == pytest.approx(want["bn_var_sum"], rel=1e-6)
    for k, v in want["bn_first"].items():
        assert float(after[k].double().sum()) == pytest.approx(v, rel=1e-5, abs=1e-6), k
    assert all(torch.equal(after[official_name(k)], before[official_name(k)])
               for k, p in model.named_parameters() if not p.requires_grad)  # the frozen I3D


# ------------------------------------------------------------------------- reference numbers

REF_I3D = {'core_hassony2_feature': {'sum': 3564.6361752696976,
                           'norm': 185.07159887647884,
                           'first': [7.5201191902160645, 0.11600961536169052, 0.0, 0.0],
                           'probes': [256.2022513399178, 44.03166056488365]},
 'core_hassony2_logits': {'sum': 362.83833958767354,
                          'norm': 168.7096006170715,
                          'first': [0.3424214720726013, -7.901578903198242, -0.5681600570678711,
                                    1.1693072319030762],
                          'probes': [-92.2358489955508, 31.652629539107494]},
 'head_hassony2_feature': {'sum': 3530.047367804451,
                           'norm': 183.28950394717415,
                           'first': [7.439245223999023, 0.11545334756374359, 0.0, 0.0],
                           'probes': [253.6757935841528, 43.80666175643211]},
 'head_hassony2_logits': {'sum': 359.35515630990267,
                          'norm': 167.0945857022584,
                          'first': [0.35008418560028076, -7.829146862030029, -0.5721095204353333,
                                    1.1551098823547363],
                          'probes': [-91.30828757629351, 31.484917703075325]},
 'musdl_piergiaj_feature': {'sum': 4427.581891007256,
                            'norm': 235.32707881854492,
                            'first': [31.192190170288086, 0.0022670752368867397, 0.0,
                                      14.026890754699707],
                            'probes': [156.26741751206256, 262.39777836915187]},
 'musdl_piergiaj_logits': {'sum': -10.21098093315959,
                           'norm': 120.52697786203264,
                           'first': [5.696228981018066, -10.07339859008789, 18.07230567932129,
                                     -13.003777503967285],
                           'probes': [179.19079855517367, 8.948684303058329]},
 'core_from_piergiaj_feature': {'sum': 4471.554863175465,
                                'norm': 237.64008510045434,
                                'first': [31.4954776763916, 0.002208095509558916, 0.0,
                                          14.160521507263184],
                                'probes': [157.75525404195335, 265.32656002663987]},
 'pecop_feature': {'sum': 25861.509467334487,
                   'norm': 796.815997636804,
                   'first': [20.077194213867188, 13.024389266967773, 5.12133264541626,
                             1.2017238140106201],
                   'probes': [333.4334438353535, -1549.9522380593512]}}
REF_VSPP = {'official': {'label': [4, 2],
              'draws': [['randint', [1, 5], 5], ['randint', [1, 4], 3], ['randint', [1, 85], 68],
                        ['random', [], 0.25], ['randint', [0, 32], 17],
                        ['randint', [0, 231], 150]],
              'frames_read': [68, 71, 74, 77, 80, 83, 86, 89, 92, 95, 98, 101, 104, 107, 110, 113,
                              118, 1, 6, 11, 16, 21, 26, 31, 36, 37, 40, 43, 46, 49, 52, 55],
              'digest': '5cbebf18a7b70cfddbd8b3d3766181faf62a0e65a39305f0b8fa0ca1003738e1',
              'channel_sums': [70324.07768550422, 364922.90345388744, 748222.4131905697],
              'loss_p': 1.7511427402496338,
              'loss_s': 1.3486759662628174,
              'loss': 3.099818706512451,
              'trainable': 49,
              'trainable_numel': 1118293,
              'delta_norm': 0.20993858827058975,
              'delta_probe': 0.00845430296097064,
              'tensor_sums': {'model.mixed_3b.tuning_module.conv1.weight': -21.611528046050807,
                              'model.mixed_4e.tuning_module.se': 523.7137145996094,
                              'model.mixed_5c.tuning_module.conv2.bias': -0.2502805647582136,
                              'logits_p.conv3d.weight': 0.41184323946572476,
                              'logits_s.conv3d.bias': -0.06454969570040703},
              'tensor_norms': {'model.mixed_3b.tuning_module.conv1.weight': 11.460927594218978,
                               'model.mixed_4e.tuning_module.se': 23.02373657235918,
                               'model.mixed_5c.tuning_module.conv2.bias': 0.4008914073888209,
                               'logits_p.conv3d.weight': 0.6407574838646761,
                               'logits_s.conv3d.bias': 0.055351372867877405},
              'bn_mean_sum': 9.402823556680232,
              'bn_var_sum': 7095.271925359964,
              'bn_changed': 114,
              'bn_first': {'model.conv3d_1a_7x7.batch3d.running_mean': -0.4351909493561834,
                           'model.mixed_5c.branch_3.1.batch3d.running_var': 125.85530292987823}},
 'bgr_only': {'label': [4, 2],
              'draws': [['randint', [1, 5], 5], ['randint', [1, 4], 3], ['randint', [1, 85], 68],
                        ['random', [], 0.25], ['randint', [0, 32], 17],
                        ['randint', [0, 231], 150]],
              'frames_read': [68, 71, 74, 77, 80, 83, 86, 89, 92, 95, 98, 101, 104, 107, 110, 113,
                              118, 1, 6, 11, 16, 21, 26, 31, 36, 37, 40, 43, 46, 49, 52, 55],
              'digest': '5cbebf18a7b70cfddbd8b3d3766181faf62a0e65a39305f0b8fa0ca1003738e1',
              'channel_sums': [70324.07768550422, 364922.90345388744, 748222.4131905697],
              'loss_p': 10.301664352416992,
              'loss_s': 0.032352350652217865,
              'loss': 10.334016799926758,
              'trainable': 49,
              'trainable_numel': 1118293,
              'delta_norm': 5.929020571757916,
              'delta_probe': 9.512265473210064,
              'tensor_sums': {'model.mixed_3b.tuning_module.conv1.weight': -21.878104326689936,
                              'model.mixed_4e.tuning_module.se': 523.705376803875,
                              'model.mixed_5c.tuning_module.conv2.bias': -0.2557998430365842,
                              'logits_p.conv3d.weight': 0.41183769300619133,
                              'logits_s.conv3d.bias': -0.06454969756305218},
              'tensor_norms': {'model.mixed_3b.tuning_module.conv1.weight': 11.460367407138115,
                               'model.mixed_4e.tuning_module.se': 23.023388391597894,
                               'model.mixed_5c.tuning_module.conv2.bias': 0.40097659980208405,
                               'logits_p.conv3d.weight': 5.837438057042925,
                               'logits_s.conv3d.bias': 0.05706044751573567},
              'bn_mean_sum': 4.55193041338498,
              'bn_var_sum': 7258.981125354767,
              'bn_changed': 0,
              'bn_first': {'model.conv3d_1a_7x7.batch3d.running_mean': -0.29324009362608194,
                           'model.mixed_5c.branch_3.1.batch3d.running_var': 126.02708160877228}},
 'corrected': {'label': [4, 2],
               'draws': [['randint', [1, 5], 5], ['randint', [1, 4], 3], ['randint', [1, 85], 68],
                         ['random', [], 0.25], ['randint', [0, 32], 17],
                         ['randint', [0, 231], 150]],
               'frames_read': [68, 71, 74, 77, 80, 83, 86, 89, 92, 95, 98, 101, 104, 107, 110, 113,
                               118, 1, 6, 11, 16, 21, 26, 31, 36, 37, 40, 43, 46, 49, 52, 55],
               'digest': 'dbe30120aa567f2a2d7ceab92e2077e3b40c1b30e77aa252cf647a2134b849f0',
               'channel_sums': [181244.80828848295, 364922.90345388744, 635329.7551508956],
               'loss_p': 10.519316673278809,
               'loss_s': 0.02626410312950611,
               'loss': 10.545580863952637,
               'trainable': 49,
               'trainable_numel': 1118293,
               'delta_norm': 6.032264038566411,
               'delta_probe': 9.499446879323532,
               'tensor_sums': {'model.mixed_3b.tuning_module.conv1.weight': -21.922987197966904,
                               'model.mixed_4e.tuning_module.se': 523.7058682441711,
                               'model.mixed_5c.tuning_module.conv2.bias': -0.2558368783265905,
                               'logits_p.conv3d.weight': 0.41184003269226466,
                               'logits_s.conv3d.bias': -0.06454969756305218},
               'tensor_norms': {'model.mixed_3b.tuning_module.conv1.weight': 11.460217756043445,
                                'model.mixed_4e.tuning_module.se': 23.023398655686545,
                                'model.mixed_5c.tuning_module.conv2.bias': 0.400977796326459,
                                'logits_p.conv3d.weight': 5.938087046081058,
                                'logits_s.conv3d.bias': 0.057066063362710445},
               'bn_mean_sum': 4.55193041338498,
               'bn_var_sum': 7258.981125354767,
               'bn_changed': 0,
               'bn_first': {'model.conv3d_1a_7x7.batch3d.running_mean': -0.29324009362608194,
                            'model.mixed_5c.branch_3.1.batch3d.running_var': 126.02708160877228}}}
