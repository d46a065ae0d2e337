import math

import pytest
import torch

from dass.db.records import (LIST_KEYS, MAP_KEY, TaskRecords, TeacherRecord, dict_to_records, load_records,
                             records_to_dict, save_records, task_file, teacher_file)
from dass.errors import DassError
from dass.space import SearchSpace


def make_records(space, n=5, seed=0, task="toy"):
    g = torch.Generator().manual_seed(seed)
    archs = space.sample_many(n, rng=seed)
    t = space.teacher()
    c = space.stage_widths[-1]
    return TaskRecords(task=task, archs=archs, arch_enc=torch.stack([space.encode(a) for a in archs]),
                       fmaps=torch.randn(n, c, 2, 2, generator=g), best_acc=torch.rand(n, generator=g) * 100,
                       final_acc=torch.rand(n, generator=g) * 100, final_loss=torch.rand(n, generator=g),
                       macs=torch.tensor([float(space.macs(a)) for a in archs]),
                       params=torch.tensor([float(space.params(a)) for a in archs]), net_index=list(range(n)),
                       teacher=TeacherRecord(t, space.encode(t), torch.randn(c, 2, 2, generator=g), 77.5))


def test_roundtrip(tmp_path, small_space):
    rec = make_records(small_space)
    save_records(rec, tmp_path, "meta_train")
    assert task_file(tmp_path, "meta_train", "toy").is_file()
    assert teacher_file(tmp_path, "meta_train", "toy").is_file()
    back = load_records(tmp_path, "meta_train", "toy")
    for k in ("arch_enc", "fmaps", "best_acc", "final_acc", "final_loss", "macs", "params"):
        assert torch.equal(getattr(back, k), getattr(rec, k)), k
    assert back.archs == rec.archs and back.net_index == rec.net_index
    assert back.teacher.acc == 77.5 and back.teacher.arch == small_space.teacher()
    assert torch.equal(back.teacher.fmap, rec.teacher.fmap)


def test_authors_layout_keys(small_space):
    d = records_to_dict(make_records(small_space))
    for k in LIST_KEYS:
        assert isinstance(d[k], list) and len(d[k]) == 5
    assert d["depth_config"][0] == list(d["depth_config"][0])


def test_authors_file_with_leading_one_and_padded_widths(small_space):
    """The authors' maps carry a leading 1 and their width lists may cover absent blocks."""
    rec = make_records(small_space, n=2)
    d = records_to_dict(rec)
    d[MAP_KEY] = [m.unsqueeze(0) for m in d[MAP_KEY]]
    d["channel_widths"] = [[ws + [ws[0]] * (3 - len(ws)) for ws in cw] for cw in d["channel_widths"]]
    del d["macs"], d["params"]
    back = dict_to_records(d, "toy", "x.pt", small_space)
    assert back.archs == rec.archs
    assert back.fmaps.shape == rec.fmaps.shape
    assert torch.equal(back.macs, rec.macs)


def test_bad_files(tmp_path, small_space):
    d = records_to_dict(make_records(small_space))
    d["best_acc"] = d["best_acc"][:3]
    with pytest.raises(DassError, match="'best_acc' has 3 entries"):
        dict_to_records(d, "toy", "f.pt")
    d = records_to_dict(make_records(small_space))
    del d["net_index"]
    with pytest.raises(DassError, match="missing key 'net_index'"):
        dict_to_records(d, "toy", "f.pt")
    with pytest.raises(DassError, match="does not exist"):
        load_records(tmp_path, "meta_train", "nope")
    (tmp_path / "meta_train").mkdir()
    task_file(tmp_path, "meta_train", "junk").write_bytes(b"garbage")
    with pytest.raises(DassError, match="corrupt"):
        load_records(tmp_path, "meta_train", "junk")


def test_a_teacher_record_without_net_index_loads(tmp_path):
    """The authors' loader never reads a teacher record's net_index; a record without it loads (a student file
    still needs it: its entries are matched by index)."""
    from dass.db.records import load_teacher_record, teacher_file, teacher_record_dict

    space = SearchSpace(stage_widths=[4, 8, 8, 16], max_depth=2, width_multipliers=[0.5, 1.0], image_size=8)
    t = TeacherRecord(space.teacher(), space.encode(space.teacher()), torch.rand(16, 1, 1), 61.5)
    d = teacher_record_dict(t)
    del d["net_index"]
    p = teacher_file(tmp_path, "meta_test", "cub")
    p.parent.mkdir(parents=True)
    torch.save(d, p)
    got = load_teacher_record(tmp_path, "meta_test", "cub")
    assert got.acc == 61.5 and torch.equal(got.fmap, t.fmap) and got.arch == t.arch
    with pytest.raises(DassError, match="missing key 'net_index'"):
        dict_to_records(d, "cub", "a student file")


def test_an_authors_search_pool_with_arch_info_or_only_net_samples(small_space):
    """Their search pools nest the inputs under ``pred_inp`` and may carry the architectures under
    ``arch_info``; without it the architectures come from ``net_info/net_samples.pt`` (entry i = candidate i)."""
    from dass.db.records import candidate_dict

    rec = make_records(small_space, n=3)
    d = records_to_dict(rec)
    theirs = {"pred_inp": {"arch_enc": d["arch_enc"]}, MAP_KEY: d[MAP_KEY],
              "arch_info": {"depth_config": d["depth_config"], "channel_widths": d["channel_widths"]}}
    asked = []
    flat = candidate_dict(theirs, "search/x.pt", net_samples=lambda: asked.append(1))
    assert not asked                                                   # arch_info was enough
    assert dict_to_records(flat, "x", "search/x.pt", small_space).archs == rec.archs
    assert all(math.isnan(a) for a in flat["best_acc"]) and flat["net_index"] == [0, 1, 2]
    del theirs["arch_info"]
    samples = [(0, 0, dc, cw) for dc, cw in zip(d["depth_config"], d["channel_widths"])]
    assert dict_to_records(candidate_dict(theirs, "search/x.pt", net_samples=lambda: samples), "x", "search/x.pt",
                           small_space).archs == rec.archs
    with pytest.raises(DassError, match="net_samples.pt has 2 entries"):
        candidate_dict(theirs, "search/x.pt", net_samples=lambda: samples[:2])
