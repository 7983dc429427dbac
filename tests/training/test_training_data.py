import numpy as np
import torch

from xraystyle.data.fetcher import BatchFetcher
from xraystyle.data.sampling import BalancedStepSampler

from .conftest import fake_cache


def test_sampler_is_a_pure_function_of_step():
    labels = np.array([0] * 90 + [1] * 10)
    s = BalancedStepSampler(labels, 2, 8, seed=3)
    a, b = s.indices(7), BalancedStepSampler(labels, 2, 8, seed=3).indices(7)
    assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("src", "y_org", "y_trg", "ref", "ref2"))
    assert not np.array_equal(s.indices(8).src, a.src)


def test_sampler_balances_classes_and_refs_match_targets():
    labels = np.array([0] * 950 + [1] * 50 + [-1] * 20)
    s = BalancedStepSampler(labels, 2, 16, seed=0)
    y_org = np.concatenate([s.indices(t).y_org for t in range(200)])
    assert 0.4 < y_org.mean() < 0.6  # balanced although domain 1 is 5% of the rows
    for t in range(50):
        idx = s.indices(t)
        assert np.array_equal(labels[idx.src], idx.y_org)
        assert np.array_equal(labels[idx.ref], idx.y_trg)
        assert np.array_equal(labels[idx.ref2], idx.y_trg)
        assert (labels[idx.src] >= 0).all()


def test_cross_targets_always_change_the_domain_and_stay_uniform():
    # domains 0, 2, 3 present, 1 empty: a cross target is one of the other present domains
    labels = np.array([0] * 30 + [2] * 5 + [3] * 5)
    s = BalancedStepSampler(labels, 4, 64, seed=0, cross=True)
    steps = [s.indices(t) for t in range(60)]
    pairs = np.concatenate([np.stack([i.y_org, i.y_trg], 1) for i in steps])
    assert (pairs[:, 0] != pairs[:, 1]).all() and not (pairs == 1).any()
    for org in (0, 2, 3):  # each of the two other domains about half the time
        share = np.bincount(pairs[pairs[:, 0] == org, 1], minlength=4)[[d for d in (0, 2, 3) if d != org]]
        assert abs(share[0] / share.sum() - 0.5) < 0.08, (org, share)
    idx = s.indices(5)
    assert np.array_equal(labels[idx.ref], idx.y_trg) and np.array_equal(labels[idx.ref2], idx.y_trg)
    # the published draw keeps same-domain targets; one present domain cannot cross
    uniform = BalancedStepSampler(labels, 4, 64, seed=0).indices(0)
    assert (uniform.y_trg == uniform.y_org).any()
    lone = BalancedStepSampler(np.zeros(5, int), 2, 8, seed=0, cross=True).indices(0)
    assert (lone.y_trg == 0).all()


def test_toggle_policy_selects_cross_targets_for_single_domains():
    from xraystyle.models.labels import LabelSpace

    space = LabelSpace(("normal", "effusion"), multi_label=False)
    labels = np.array([0] * 10 + [1] * 10)
    usable = np.ones(20, bool)
    assert space.sampler(labels, usable, 8, 0, "toggle").cross
    assert not space.sampler(labels, usable, 8, 0, "mixed").cross


def test_shards_of_two_ranks_make_the_global_batch():
    images, labels = fake_cache(n=16)
    sampler = BalancedStepSampler(labels, 2, 4, seed=1)
    single = BatchFetcher(images, sampler, 8, seed=1)(5)
    parts = [BatchFetcher(images, sampler, 8, seed=1, rank=r, world=2)(5) for r in range(2)]
    for name in ("x_real", "y_org", "x_ref", "x_ref2", "y_trg", "y_ref", "z_trg", "z_trg2"):
        assert torch.equal(getattr(single, name), torch.cat([getattr(p, name) for p in parts])), name


def test_damaged_tensor_cache_is_rebuilt_not_unpickled(tmp_path, caplog):
    from xraystyle.data.cache import build_tensor_cache
    from xraystyle.transforms import PreprocessConfig

    from .conftest import write_png_cohort

    m = write_png_cohort(tmp_path / "c", n=6)
    cfg = PreprocessConfig(size=32)
    first = build_tensor_cache(m, cfg, tmp_path / "cache", progress=False)
    data_file = next((tmp_path / "cache").glob("tensors-*[!k].npy"))
    assert first.images.shape == (6, 1, 32, 32) and first.ok.all()
    expected = np.array(first.images)  # copy: the file under the memory map is about to change
    del first
    np.save(data_file, np.array([object()], dtype=object), allow_pickle=True)  # a pickle in disguise
    again = build_tensor_cache(m, cfg, tmp_path / "cache", progress=False)
    assert "rebuilding" in caplog.text
    assert np.array_equal(np.asarray(again.images), expected)


def test_images_rewritten_under_the_same_paths_are_not_served_from_the_old_cache(tmp_path):
    import os
    import shutil

    from PIL import Image

    from xraystyle.cohorts.manifest import load_manifest
    from xraystyle.data.cache import build_tensor_cache
    from xraystyle.transforms import PreprocessConfig

    from .conftest import write_png_cohort

    m = write_png_cohort(tmp_path / "c", n=6, seed=0)
    cfg = PreprocessConfig(size=32)
    first = build_tensor_cache(m, cfg, tmp_path / "cache", progress=False)
    old = np.array(first.images)
    assert build_tensor_cache(m, cfg, tmp_path / "cache", progress=False).key == first.key  # reused
    # A copy of the cohort (new modification times, as after `cp` without -p, or on another node)
    # keeps the key: data-parallel ranks agree and nothing is rebuilt.
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "c", copy, copy_function=shutil.copyfile)
    os.utime(copy / "img" / "im000.png", ns=(1, 1))
    assert build_tensor_cache(load_manifest(copy / "manifest.csv"), cfg, tmp_path / "cache",
                              progress=False).key == first.key
    for f in sorted((tmp_path / "c" / "img").glob("*.png")):  # a re-export: same names, new pixels
        a = np.asarray(Image.open(f)).astype(np.int64)
        Image.fromarray((65535 - a).astype(np.uint16)).save(f)
    again = build_tensor_cache(m, cfg, tmp_path / "cache", progress=False)
    assert again.key != first.key
    assert not np.array_equal(np.asarray(again.images), old)


def test_default_phantom_is_regenerated_for_another_generator_version(tmp_path, monkeypatch):
    from xraystyle.phantom import default

    monkeypatch.setattr(default, "DEFAULT_PHANTOM", {**default.DEFAULT_PHANTOM, "n": 12})
    first = default.default_phantom_manifest(32, tmp_path)
    assert default.default_phantom_manifest(32, tmp_path) == first  # cached
    monkeypatch.setattr(default, "generator_version", lambda: "another-version")
    second = default.default_phantom_manifest(32, tmp_path)
    assert second != first and second.exists()


def test_generator_version_follows_sources_and_lung_templates(tmp_path, monkeypatch):
    from xraystyle.phantom import default
    from xraystyle.phantom import lungs as phantom_lungs

    without = default.generator_version()
    assert not without.startswith("v")  # the generator's source files were found and hashed
    fake_zip = tmp_path / "semantic_masks_v7labs_lungs.zip"
    fake_zip.write_bytes(b"templates")
    monkeypatch.setattr(phantom_lungs, "_zip_path", lambda: fake_zip)
    assert default.generator_version() != without
