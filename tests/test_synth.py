"""The synthetic data set: Kaggle layout, tree-consistent labels, determinism, learnable signal."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import pytest
import simplejpeg

from galaxyprep import synth
from galaxyprep.errors import InputError
from galaxyprep.synth import population as pop
from galaxyprep.synth import render as R
from galaxyprep.synth import streams
from galaxyprep.tree import CLASS_NAMES, QUESTION_SLICES, tree_violation

# Labels are exact vote fractions k / N; the CSV rounds each to 6 decimals, so a
# question's sum (at most 7 answers) can differ from its parent by < 8 * 5e-7.
TREE_TOLERANCE = 1e-5


def _read_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "demo"
    calls = []
    result = synth.synthesize(out, 24, n_test=6, seed=3, progress=calls.append)
    return result, calls


def test_layout_header_and_ids(small_set):
    result, _ = small_set
    assert result.n_train == 24 and result.n_test == 6 and result.seconds > 0
    assert result.train_images == result.out_dir / "images_training_rev1"
    assert result.test_images == result.out_dir / "images_test_rev1"
    assert result.labels_csv == result.out_dir / "training_solutions_rev1.csv"
    header = result.labels_csv.read_text().splitlines()[0]
    assert header == "GalaxyID," + ",".join(CLASS_NAMES)
    table = pd.read_csv(result.labels_csv)
    ids = table["GalaxyID"].to_numpy()
    assert len(ids) == 24 and np.all(np.diff(ids) > 0)  # sorted, unique
    train = sorted(int(p.stem) for p in result.train_images.glob("*.jpg"))
    test = sorted(int(p.stem) for p in result.test_images.glob("*.jpg"))
    assert train == ids.tolist()
    assert len(test) == 6 and not set(test) & set(train)
    assert all(100000 <= i <= 999999 for i in train + test)
    assert not list(result.out_dir.glob("*.tmp"))


def test_progress_counts_finished_images(small_set):
    _, calls = small_set
    assert calls and calls == sorted(calls) and calls[-1] == 30


def test_jpegs_are_baseline_424_rgb(small_set):
    result, _ = small_set
    for path in list(result.train_images.glob("*.jpg")) + list(result.test_images.glob("*.jpg")):
        data = path.read_bytes()
        assert b"\xff\xc0" in data and b"\xff\xc2" not in data  # baseline (SOF0), not progressive
        assert 2_000 < len(data) < 60_000
        image = simplejpeg.decode_jpeg(data)
        assert image.shape == (424, 424, 3) and image.dtype == np.uint8


def test_labels_obey_the_tree(small_set):
    result, _ = small_set
    labels = pd.read_csv(result.labels_csv).iloc[:, 1:].to_numpy()
    assert labels.shape == (24, 37)
    assert labels.min() >= 0.0 and labels.max() <= 1.0
    assert tree_violation(labels).max() < TREE_TOLERANCE
    for q in (0, 5):  # Class1 and Class6 are asked of everyone
        np.testing.assert_allclose(labels[:, QUESTION_SLICES[q]].sum(axis=1), 1.0, atol=TREE_TOLERANCE)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = synth.synthesize(tmp_path / "a", 8, n_test=2, seed=5, workers=1)
    b = synth.synthesize(tmp_path / "b", 8, n_test=2, seed=5, workers=2)
    c = synth.synthesize(tmp_path / "c", 8, n_test=2, seed=6)
    assert _read_bytes(a.train_images) == _read_bytes(b.train_images)
    assert _read_bytes(a.test_images) == _read_bytes(b.test_images)
    assert a.labels_csv.read_bytes() == b.labels_csv.read_bytes()
    assert a.labels_csv.read_bytes() != c.labels_csv.read_bytes()
    assert set(_read_bytes(a.train_images).values()).isdisjoint(_read_bytes(c.train_images).values())


def test_training_set_is_a_prefix_and_ignores_the_test_part(tmp_path):
    ids_small, images_small, labels_small = synth.synthesize_arrays(5, seed=9, size=96)
    ids_big, images_big, labels_big = synth.synthesize_arrays(12, seed=9, size=96)
    np.testing.assert_array_equal(ids_small, ids_big[:5])
    np.testing.assert_array_equal(images_small, images_big[:5])
    np.testing.assert_array_equal(labels_small, labels_big[:5])
    with_test = synth.synthesize(tmp_path / "t", 5, n_test=4, seed=9, size=96)
    without = synth.synthesize(tmp_path / "n", 5, seed=9, size=96)
    assert with_test.labels_csv.read_bytes() == without.labels_csv.read_bytes()
    assert _read_bytes(with_test.train_images) == _read_bytes(without.train_images)
    assert without.test_images is None and not (without.out_dir / "images_test_rev1").exists()
    # the files hold the in-memory images, up to JPEG loss
    for gid, image in zip(ids_small, images_small):
        decoded = simplejpeg.decode_jpeg((without.train_images / f"{gid}.jpg").read_bytes())
        assert np.abs(decoded.astype(int) - image).mean() < 3.0


# sha256 of a small set as the generator wrote it before it became a subpackage (recorded 2026-12-01 from
# galaxyprep/synth.py + _synth_render.py, numba and numpy as pinned in constraints.txt): a refactor must
# keep the bytes. The kernels use fastmath, so another numba/LLVM or CPU may round differently.
GOLDEN_TRAIN_JPEGS = "6a2bb8d3eff5011337fff9e4c751f8f168b7309b4740db0243f6f30b936b0097"
GOLDEN_TEST_JPEGS = "ebedacaf23a110465312fe6eeb6c3bf1a41c854c862e3a7f2b4cca35b8e01b80"
GOLDEN_CSV = "87d82ec0c24775c56db13c1dcb779aaba1353df035d4c5a5f1204c4c5b8f90b6"
GOLDEN_PIXELS = "e867617174867864dbf22254b68a9b6c034ab18350aba5ef3b689f375652deb7"


def _folder_sha256(folder):
    digest = hashlib.sha256()
    for name, data in _read_bytes(folder).items():
        digest.update(name.encode())
        digest.update(data)
    return digest.hexdigest()


def test_output_bytes_are_those_recorded(tmp_path):
    result = synth.synthesize(tmp_path, 12, n_test=3, seed=7, size=96)
    assert _folder_sha256(result.train_images) == GOLDEN_TRAIN_JPEGS
    assert _folder_sha256(result.test_images) == GOLDEN_TEST_JPEGS
    assert hashlib.sha256(result.labels_csv.read_bytes()).hexdigest() == GOLDEN_CSV
    _, images, _ = synth.synthesize_arrays(12, seed=7, size=96)
    assert hashlib.sha256(images.tobytes()).hexdigest() == GOLDEN_PIXELS


def test_refuses_a_folder_with_images_unless_overwrite(tmp_path):
    synth.synthesize(tmp_path, 4, seed=1, size=64)
    with pytest.raises(InputError, match="already holds 4 images"):
        synth.synthesize(tmp_path, 3, seed=2, size=64)
    result = synth.synthesize(tmp_path, 3, seed=2, size=64, overwrite=True)
    assert len(list(result.train_images.glob("*.jpg"))) == 3
    assert len(pd.read_csv(result.labels_csv)) == 3


@pytest.mark.parametrize("kwargs", [dict(n=0), dict(n=3, n_test=-1), dict(n=3, size=8), dict(n=3, seed=-1),
                                    dict(n=900_000, n_test=1)])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        synth.synthesize(tmp_path, **kwargs)


def test_images_look_like_centred_galaxies_on_dark_sky():
    _, images, _ = synth.synthesize_arrays(40, seed=4)
    x = images.astype(np.float64)
    corners = np.concatenate([x[:, :40, :40], x[:, :40, -40:], x[:, -40:, :40], x[:, -40:, -40:]], axis=1)
    sky = np.median(corners, axis=(1, 2))  # (n, 3)
    assert np.all(sky.mean(axis=1) < 15)  # dark sky, as in the SDSS cut-outs
    noise = corners[:, :, :, 1].std(axis=(1, 2))
    assert np.median(noise) > 1.0  # but not flat: there is sky noise
    centre = x[:, 192:232, 192:232].mean(axis=(1, 2, 3))
    galaxies = centre > 4 * sky.mean(axis=1) + 20
    assert galaxies.mean() > 0.9  # nearly every image has an object at its centre
    # bulges are red-yellow: red above blue at the centre of most images
    assert np.mean(x[:, 200:224, 200:224, 0].mean(axis=(1, 2)) > x[:, 200:224, 200:224, 2].mean(axis=(1, 2))) > 0.7


def _radial_features(images: np.ndarray) -> np.ndarray:
    """Rotation-invariant summaries: ring means per channel and their spread, and the light's elongation."""
    size = images.shape[1]
    x = images.astype(np.float32) / 255.0
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2 + 0.5, xx - size / 2 + 0.5) * (424 / size)
    rings = np.minimum((r / 8).astype(int), 15).ravel()
    counts = np.bincount(rings, minlength=16)
    grey = x.mean(axis=-1)
    means = [np.stack([np.bincount(rings, weights=im[..., c].ravel(), minlength=16) / counts for im in x])
             for c in range(3)]
    spread = np.stack([np.bincount(rings, weights=np.abs(g - np.bincount(rings, weights=g.ravel(), minlength=16)
                                                         [rings].reshape(g.shape) / counts[rings].reshape(g.shape)
                                                         ).ravel(), minlength=16) / counts for g in grey])
    w = np.clip(grey - 0.05, 0, None) * (r < 100)
    total = w.sum(axis=(1, 2)) + 1e-6
    mx = (w * xx).sum(axis=(1, 2)) / total
    my = (w * yy).sum(axis=(1, 2)) / total
    dx, dy = xx[None] - mx[:, None, None], yy[None] - my[:, None, None]
    a, b, c = ((w * dx * dx).sum((1, 2)) / total, (w * dy * dy).sum((1, 2)) / total, (w * dx * dy).sum((1, 2)) / total)
    root = np.sqrt(((a - b) / 2) ** 2 + c * c)
    axis_ratio = ((a + b) / 2 - root) / ((a + b) / 2 + root + 1e-9)
    return np.concatenate([*means, np.log(means[1] + 1e-3), spread, axis_ratio[:, None], np.sqrt(a + b)[:, None]], 1)


def test_labels_carry_signal_a_simple_model_learns():
    linear_model = pytest.importorskip("sklearn.linear_model")
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    n = 300
    _, images, labels = synth.synthesize_arrays(n, seed=21, size=212)
    features = preprocessing.StandardScaler().fit_transform(_radial_features(images))
    train = 2 * n // 3
    model = linear_model.Ridge(alpha=10.0).fit(features[:train], labels[:train])
    rmse = np.sqrt(((model.predict(features[train:]) - labels[train:]) ** 2).mean())
    baseline = np.sqrt(((labels[:train].mean(axis=0) - labels[train:]) ** 2).mean())
    assert 0.12 < baseline < 0.25  # about the real data's 0.176
    assert rmse < 0.85 * baseline


def test_votes_follow_the_generating_parameters():
    truth, labels, _ = streams.plan(0, streams.TRAIN, 4096, 424)
    col = {name: labels[:, i] for i, name in enumerate(CLASS_NAMES)}
    kind = truth["kind"]

    def higher(column, where):
        return col[column][where].mean() > col[column][~where].mean() + 0.1

    assert higher("Class1.1", kind == pop.ELLIPTICAL)
    assert higher("Class1.3", kind == pop.STAR)
    assert higher("Class2.1", kind == pop.EDGE_ON)
    assert higher("Class3.1", truth["bar"])
    assert higher("Class4.1", truth["arms"])
    assert higher("Class6.1", truth["odd"] != pop.NONE)
    assert higher("Class8.6", truth["odd"] == pop.MERGER)
    assert higher("Class8.1", truth["odd"] == pop.RING)
    ell = kind == pop.ELLIPTICAL
    assert higher("Class7.1", ell & (truth["q_ell"] > 0.8))
    assert higher("Class7.3", ell & (truth["q_ell"] < 0.5))
    edge = kind == pop.EDGE_ON
    assert higher("Class9.3", edge & (truth["edge_bulge"] == 2))
    arms = truth["arms"]
    assert higher("Class10.3", arms & (truth["pitch"] > 25))
    assert higher("Class11.2", arms & (truth["m"] == 2))
    disc = kind == pop.DISC
    assert higher("Class5.3", disc & (truth["bt"] > 0.22) & (truth["bt"] < 0.5))


def test_label_means_resemble_the_real_ones(shared_gz):
    real = pd.read_csv(shared_gz / "training_solutions_rev1.csv").iloc[:, 1:].to_numpy().mean(axis=0)
    _, labels, _ = streams.plan(1, streams.TRAIN, 8192, 424)
    ours = labels.mean(axis=0)
    assert np.abs(ours - real).max() < 0.05
    assert np.abs(ours - real).mean() < 0.02


# ---------------------------------------------------------------- kernels against numpy references


def test_blur_matches_a_numpy_convolution():
    rng = np.random.default_rng(0)
    layer = rng.random((60, 60, 3)).astype(np.float32)
    sigma = 1.4
    radius = math.ceil(3 * sigma)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(layer.astype(np.float64), ((radius, radius), (radius, radius), (0, 0)))
    rows = sum(t * padded[:, k:k + 60] for k, t in enumerate(taps))
    full = sum(t * rows[k:k + 60] for k, t in enumerate(taps))
    window = (slice(10, 45), slice(5, 50))
    blurred = layer.copy()
    R._blur(blurred, np.empty_like(layer), sigma, 10, 45, 5, 50)
    np.testing.assert_allclose(blurred[window], full[window], atol=1e-5)
    outside = np.ones((60, 60), bool)
    outside[window] = False
    np.testing.assert_array_equal(blurred[outside], layer[outside])


def test_stretch_table_is_asinh():
    table = R._stretch_table()
    lum = (np.arange(1, table.size) / R._STRETCH_STEPS) ** 2
    np.testing.assert_allclose(table[1:], R.STRETCH_GAIN * np.arcsinh(lum) / lum, rtol=1e-6)
    assert table[0] == pytest.approx(R.STRETCH_GAIN)


def test_galaxy_profiles_match_their_formulas():
    """Bulge + inclined disc + arms from the tabulated kernel against the formulas evaluated per pixel."""
    size = 160
    p = np.zeros(R.N_PARAMS)
    p[[R.P_CX, R.P_CY, R.P_PA]] = 80.3, 79.6, 0.6
    p[[R.P_BULGE_AMP, R.P_BULGE_RE, R.P_BULGE_N, R.P_BULGE_Q, R.P_BULGE_BOXY]] = 3.0, 6.0, 3.0, 0.8, 2.0
    p[R.P_BULGE_RGB:R.P_BULGE_RGB + 3] = 1.2, 1.0, 0.8
    p[[R.P_DISC_AMP, R.P_DISC_H, R.P_DISC_Q]] = 1.0, 15.0, 0.6
    p[R.P_DISC_RGB:R.P_DISC_RGB + 3] = 1.0, 1.0, 1.0
    p[[R.P_ARM_M, R.P_ARM_TANPSI, R.P_ARM_PHASE, R.P_ARM_AMP, R.P_ARM_SHARP, R.P_ARM_RIN]] = 2, 0.35, 0.4, 0.7, 3, 12.0
    p[R.P_ARM_RGB:R.P_ARM_RGB + 3] = 0.8, 1.0, 1.2
    p[[R.P_BAR_A, R.P_BAR_B, R.P_RING_W, R.P_DUST_W, R.P_DISC_H]] = 1.0, 1.0, 1.0, 1.0, 15.0
    radius = 70.0
    layer = np.zeros((size, size, 3), np.float32)
    R._draw_galaxy(p, layer, radius)

    yy, xx = np.mgrid[:size, :size] + 0.5
    dx, dy = xx - p[R.P_CX], yy - p[R.P_CY]
    u = dx * math.cos(0.6) + dy * math.sin(0.6)
    v = -dx * math.sin(0.6) + dy * math.cos(0.6)
    n, re = 3.0, 6.0
    bn = 2 * n - 1 / 3 + 0.009876 / n
    bulge = 3.0 * np.exp(-bn * (((u**2 + (v / 0.8) ** 2 + 0.25) / re**2) ** (0.5 / n) - 1))
    vd = v / 0.6
    rd = np.hypot(u, vd)
    disc = np.exp(-rd / 15.0)
    ramp = np.clip((rd - 0.3 * 12) / (0.7 * 12), 0, 1) * np.exp(-np.clip(rd - 3.5 * 15, 0, None) / 15)
    arm = np.where(rd > 0.3 * 12, 0.7 * ramp, 0.0)
    phase = 2 * (np.arctan2(vd, u) - np.log(np.maximum(rd, 1e-9) / 12) / 0.35) + 0.4
    shape = (0.5 + 0.5 * np.cos(phase)) ** 3 / (0.5 * 0.75 * (5 / 6))
    expected = np.stack([bulge * w0 + disc * (1 - arm) * w1 + disc * arm * shape * w2
                         for w0, w1, w2 in zip((1.2, 1.0, 0.8), (1.0, 1.0, 1.0), (0.8, 1.0, 1.2))], -1)
    # compared inside the fade (outer quarter of the circle) and where each component's own elliptical
    # radius is still inside its table (the kernel stops a component there, where it is below ~1e-3 of its level)
    inner = (np.hypot(dx, dy) < 0.7 * radius) & (np.hypot(dx, dy) > 2.0) & (rd < radius)
    np.testing.assert_allclose(layer[inner], expected[inner], rtol=2e-3, atol=2e-3)
    assert np.all(layer[np.hypot(dx, dy) > radius + 1] == 0)  # nothing beyond the drawn circle
