"""The authors' options the project offers beside its own: sampler-size check, label choice, fixed inner
rate (tests/test_inner_lrs.py), heavy teacher augmentation, their Spearman CSV and remap variants."""
import pytest

from dass.config import load_config
from dass.errors import ConfigError


@pytest.fixture(scope="module")
def trained_small(tmp_path_factory):
    """A short seeded meta-training on the fixture database (tasks t0-t3, v0, x0, x1)."""
    from test_meta import small_cfg

    from dass.db.records import load_split_records
    from dass.predictor.trainer import MetaTrainer
    from dass.testing import fixture_db_for_config

    cfg = small_cfg(tmp_path_factory.mktemp("authors"), "meta.episodes=4", "meta.eval_every=2")
    fixture_db_for_config(cfg)
    splits = [load_split_records(cfg, m) for m in ("meta_train", "meta_valid", "meta_test")]
    return cfg, MetaTrainer(cfg, *splits, cfg.meta.out, "cpu", progress=False).run()["checkpoint"]


def test_num_students_must_cover_a_support_and_a_full_query_set():
    with pytest.raises(ConfigError, match=r"'db.num_students' = 50 must be at least meta.n_query \+ 1 = 51"):
        load_config(None, ["db.num_students=50"])
    assert load_config(None, ["db.num_students=9", "meta.n_query=8"]).db.num_students == 9
    paper = load_config("configs/paper.yaml")
    assert (paper.db.num_students, paper.db.num_students_meta_test, paper.meta.seed) == (51, 50, 2)
    assert paper.search.inner_lr == "initial"


def test_meta_test_tasks_get_their_own_student_count(tmp_path):
    from dass.db.build import work_items

    cfg = load_config(None, ["db.num_students=4", "meta.n_query=3", "db.num_students_meta_test=2",
                             "tasks.meta_train=[a]", "tasks.meta_valid=[b]", "tasks.meta_test=[c]",
                             "space.stage_widths=[4,8,8,16]", "space.max_depth=2", "space.width_multipliers=[0.5,1.0]",
                             "space.image_size=8"])
    counts = {}
    for it in work_items(cfg):
        counts[it.task] = counts.get(it.task, 0) + 1
    assert counts == {"a": 4, "b": 4, "c": 2}


def test_acc_type_chooses_the_label(tmp_path):
    import torch
    from test_meta import small_cfg

    from dass.db.records import load_split_records
    from dass.testing import fixture_db_for_config

    cfg = small_cfg(tmp_path)
    fixture_db_for_config(cfg)
    best = load_split_records(cfg, "meta_train")
    final = load_split_records(small_cfg(tmp_path, "meta.acc_type=final"), "meta_train")
    for b, f in zip(best, final):
        assert torch.equal(b.label, b.best_acc) and torch.equal(f.label, b.final_acc)
        assert not torch.equal(f.label, b.label)
        assert torch.equal(f.best_acc, b.best_acc)       # the best accuracy keeps its name whatever labels the task
    with pytest.raises(ConfigError, match="acc_type"):
        load_config(None, ["meta.acc_type=last"])


def _authors_slice(w, out_ch, in_ch=None):
    """The authors' copy_paste_uniform slicing, written as their code does it."""
    p = w[::int(w.shape[0] / out_ch)][:out_ch]
    if in_ch is not None:
        p = p[:, ::int(w.shape[1] / in_ch)][:, :in_ch]
    return p


@pytest.mark.parametrize("strategy,blocks", [("copy_paste_uniform", [0, 1]), ("copy_paste_uniform_last", [3, 4])])
def test_copy_paste_uniform_variants_take_first_or_last_blocks_with_strided_channels(paper_teacher, strategy, blocks):
    import torch

    from dass.remap import remapped_student
    from dass.space import Arch

    t = paper_teacher
    arch = Arch([2, 1, 1, 1], [[16, 24], [40], [96], [256]])
    s = remapped_student(t, arch, strategy)
    tb0, tb1 = (t.layers[0][k] for k in blocks)
    sb0, sb1 = s.layers[0]
    # the stem takes its first channels, whatever the first block takes (the authors' KD code)
    assert torch.equal(s.conv1.weight, t.conv1.weight[:16])
    assert torch.equal(s.bn1.running_var, t.bn1.running_var[:16])
    assert torch.equal(sb0.conv1.weight, tb0.conv1.weight[0:32:2][:, 0:32:2])
    assert torch.equal(sb0.conv1.weight, _authors_slice(tb0.conv1.weight, 16, 16))
    assert torch.equal(sb1.conv1.weight, tb1.conv1.weight[:24][:, 0:32:2])            # 32 // 24 = 1: channels 0..23
    assert torch.equal(sb1.bn2.bias, tb1.bn2.bias[:24])
    one = 0 if blocks[0] == 0 else 4                                                   # the block of a depth-1 stage
    tl = t.layers[1][one]
    assert torch.equal(s.layers[1][0].conv1.weight, _authors_slice(tl.conv1.weight, 40, 24))   # every 1st of 64
    assert torch.equal(s.layers[1][0].conv2.weight, tl.conv2.weight[:40][:, :40])
    t3 = t.layers[2][one]
    assert torch.equal(s.layers[2][0].conv1.weight, _authors_slice(t3.conv1.weight, 96, 40))
    stride_in = 64 // 40 if one == 0 else 128 // 40                                    # 1, or 3 for a last block
    assert torch.equal(s.layers[2][0].conv1.weight, t3.conv1.weight[:96][:, ::stride_in][:, :40])
    t4 = t.layers[3][one].conv1.weight                                                 # in 128 (first) or 256 (last)
    assert torch.equal(s.layers[3][0].conv1.weight, t4[:, ::t4.shape[1] // 96][:, :96])
    assert torch.equal(s.layers[3][0].conv1.weight, _authors_slice(t4, 256, 96))


def test_meta_test_writes_the_authors_spearman_csv(tmp_path, trained_small):
    import csv

    from dass.evaluate import run_meta_test
    from dass.db.records import load_split_records
    from dass.predictor.checkpoint import load_predictor
    from dass.predictor.inference import evaluate_task, predict

    cfg, ckpt = trained_small
    run_meta_test(cfg, ckpt, baselines="macs", progress=False, out=tmp_path / "mt")
    path = tmp_path / "mt" / "meta_spearmanr_corr.csv"                    # meta.out is <tmp>/meta
    lines = list(csv.reader(open(path)))
    assert lines[0] == ["", "va_v0_spearmanr", "va_spearmanr", "te_x0_spearmanr", "te_x1_spearmanr", "te_spearmanr"]
    assert [r[0] for r in lines[1:]] == ["dass", "macs"]
    pred = load_predictor(ckpt)
    (v0,), (x0, x1) = load_split_records(cfg, "meta_valid"), load_split_records(cfg, "meta_test")
    rho = [evaluate_task(predict(pred, r), r)["spearman"] for r in (v0, x0, x1)]
    want = [rho[0], rho[0], rho[1], rho[2], (rho[1] + rho[2]) / 2]
    assert [float(x) for x in lines[1][1:]] == [round(x, 3) for x in want]
    assert all(len(x.split(".")[-1]) <= 3 for x in lines[2][1:])


def test_authors_dataset_keys():
    from dass.spearman_csv import summary_rows

    rows = summary_rows([{"task": "tiny_imagenet-8", "method": "dass", "spearman": 0.12345}],
                         [{"task": "cub", "method": "dass", "spearman": float("nan")}])
    assert list(rows[0]) == ["", "va_tiny_imagenet_8_spearmanr", "va_spearmanr", "te_cub_spearmanr", "te_spearmanr"]
    assert rows[0]["va_tiny_imagenet_8_spearmanr"] == 0.123


def test_rotation_and_blur_match_torchvision_semantics():
    import torch

    from dass.data.loader import gaussian_blur, rotate

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 9, 9, generator=g)
    assert torch.equal(rotate(x, torch.tensor([90.0, 90.0])), torch.rot90(x, 1, dims=(2, 3)))   # counter-clockwise
    assert torch.equal(rotate(x, torch.zeros(2)), x)
    corner = rotate(torch.zeros(1, 1, 9, 9), torch.tensor([45.0]), fill=-1.0)
    assert corner[0, 0, 0, 0] == -1.0 and corner[0, 0, 4, 4] == 0.0                     # outside = fill
    const = torch.full((2, 3, 8, 8), 0.3)
    assert torch.allclose(gaussian_blur(const, torch.tensor([0.5, 4.0])), const, atol=1e-6)
    # a 1-d check of the 9-tap vertical kernel against its formula
    impulse = torch.zeros(1, 1, 21, 21)
    impulse[0, 0, 10, 10] = 1.0
    out = gaussian_blur(impulse, torch.tensor([2.0]))[0, 0]
    t = torch.arange(-4, 5, dtype=torch.float32)
    ky = torch.exp(-0.5 * (t / 2.0) ** 2)
    kx = ky[2:7]
    assert torch.allclose(out[6:15, 8:13], torch.outer(ky / ky.sum(), kx / kx.sum()), atol=1e-7)
    assert out[:6].abs().max() == 0 and out[:, :8].abs().max() == 0                    # 9 tall, 5 wide


def test_heavy_teacher_augmentation_is_opt_in_and_seeded(tmp_path):
    import torch
    from test_train import make_cfg, tiny_task

    from dass.data.loader import BatchLoader
    from dass.train import engine as train

    task = tiny_task(n_train=64, n_test=32)
    kw = dict(batch_size=16, image_size=16, train=True, seed=3, pad=2)
    plain, heavy = BatchLoader(task.train_images, task.train_labels, **kw), \
        BatchLoader(task.train_images, task.train_labels, heavy=True, **kw)
    again = BatchLoader(task.train_images, task.train_labels, heavy=True, **kw)
    (xp, yp), (xh, yh), (xa, _) = next(iter(plain)), next(iter(heavy)), next(iter(again))
    assert torch.equal(yp, yh) and torch.equal(xh, xa) and not torch.allclose(xp, xh)
    assert not BatchLoader(task.test_images, task.test_labels, 16, 16, train=False, heavy=True).heavy
    cfg = make_cfg(tmp_path, "teacher.epochs=1", "teacher.eval_every=1")
    base = train.train_teacher(task, cfg, out_dir=tmp_path / "a", progress=False)
    hcfg = make_cfg(tmp_path, "teacher.epochs=1", "teacher.eval_every=1", "teacher.heavy_aug=true")
    aug = train.train_teacher(task, hcfg, out_dir=tmp_path / "b", progress=False)
    assert aug["train_loss"] != base["train_loss"]
    with pytest.raises(Exception, match="teacher.heavy_aug=False"):                     # a resume must not switch it
        train.train_teacher(task, hcfg, out_dir=tmp_path / "a", progress=False)


@pytest.mark.parametrize("strategy", ["copy_paste_first", "copy_paste_last", "copy_paste_uniform",
                                      "copy_paste_uniform_last", "uniform"])
def test_the_stem_of_the_copy_paste_ablations_takes_the_first_channels(paper_teacher, strategy):
    """The authors' KD code cuts the stem's first channels in every copy_paste ablation, whatever the blocks
    take (copy_paste_last's blocks take their last channels); the paper's ``uniform`` remap keeps its
    evenly spaced channels for the stem too."""
    import torch

    from dass.remap import remapped_student
    from dass.space import Arch

    t = paper_teacher
    s = remapped_student(t, Arch([1, 1, 1, 1], [[16], [40], [96], [256]]), strategy)
    c = t.conv1.weight.shape[0]
    stem = torch.round(torch.linspace(0, c - 1, 16)).long() if strategy == "uniform" else torch.arange(16)
    assert torch.equal(s.conv1.weight, t.conv1.weight[stem])
    assert torch.equal(s.bn1.running_mean, t.bn1.running_mean[stem]) and torch.equal(s.bn1.weight, t.bn1.weight[stem])
