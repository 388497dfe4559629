"""How training computes: precision by the hardware, XLA by the device, oneDNN asked for, FLOPs counted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from galaxytrain.compute import (choose_jit_compile, choose_precision, cpu_bfloat16_units, onednn_enabled,
                                 recorded_policy, training_precision)

AMD_AVX2 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse sse2 avx fma avx2 bmi2\n"
AMD_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
INTEL_AMX = "processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes sve bf16 i8mm\n"


@pytest.mark.parametrize("cpuinfo, units", [(AMD_AVX2, ()), (AMD_BF16, ("avx512_bf16",)),
                                            (INTEL_AMX, ("amx_bf16", "avx512_bf16")), (GRAVITON3, ("bf16",)),
                                            ("", ())])
def test_bfloat16_units_are_read_from_the_cpu_flags(cpuinfo, units):
    assert cpu_bfloat16_units(cpuinfo, max_isa="", onednn=True) == units


def test_onednn_max_isa_hides_the_units_above_it():
    assert cpu_bfloat16_units(INTEL_AMX, max_isa="AVX2", onednn=True) == ()
    assert cpu_bfloat16_units(INTEL_AMX, max_isa="avx512_core_vnni", onednn=True) == ()
    assert cpu_bfloat16_units(INTEL_AMX, max_isa="AVX512_CORE_BF16", onednn=True) == ("avx512_bf16",)
    assert cpu_bfloat16_units(INTEL_AMX, max_isa="ALL", onednn=True) == ("amx_bf16", "avx512_bf16")


def test_without_onednn_no_unit_counts():
    """TF_ENABLE_ONEDNN_OPTS=0: Eigen's kernels, which emulate bfloat16 on any CPU."""
    assert cpu_bfloat16_units(INTEL_AMX, max_isa="", onednn=False) == ()
    assert cpu_bfloat16_units(INTEL_AMX, max_isa="", onednn=True) == ("amx_bf16", "avx512_bf16")


def test_precision_follows_the_hardware_unless_forced():
    # CPUs: bfloat16 only where native.
    assert choose_precision(None, [], ()).policy == "float32"
    assert choose_precision(None, [], ("avx512_bf16",)).policy == "mixed_bfloat16"
    assert choose_precision(None, [], ("bf16",)).policy == "mixed_bfloat16"
    # GPUs: float16 on tensor cores (7.0+), float32 on older cards or where the capability is unknown.
    assert choose_precision(None, [(8, 0)], ()).policy == "mixed_float16"
    assert choose_precision(None, [(7, 0), (8, 6)], ()).policy == "mixed_float16"
    assert choose_precision(None, [(6, 1)], ("avx512_bf16",)).policy == "float32"
    assert choose_precision(None, [None], ()).policy == "float32"
    # Forced either way; forcing emulated bfloat16 is honoured and said to be slow.
    forced = choose_precision(True, [], ())
    assert forced.policy == "mixed_bfloat16" and "emulated" in forced.reason
    assert choose_precision(False, [], ("amx_bf16",)).policy == "float32"
    assert choose_precision(True, [(6, 1)], ()).policy == "mixed_float16"
    assert choose_precision(False, [(9, 0)], ()).policy == "float32"


def test_a_resume_keeps_its_precision_where_it_runs_natively_and_says_when_it_cannot():
    # Same hardware: the run's own (bfloat16 here), whichever a new run would take.
    assert training_precision(None, "mixed_bfloat16", [], ("avx512_bf16",)).policy == "mixed_bfloat16"
    kept = training_precision(None, "float32", [], ("avx512_bf16",))
    assert kept.policy == "float32" and "the run's own" in kept.reason
    # A bfloat16 run moved to an AVX2 CPU, a float16 one from a GPU to a CPU: this hardware's choice, said.
    moved = training_precision(None, "mixed_bfloat16", [], ())
    assert moved.policy == "float32" and "differ from an uninterrupted run" in moved.reason
    assert training_precision(None, "mixed_float16", [], ("amx_bf16",)).policy == "mixed_bfloat16"
    # An option given wins over the run's, with the same warning.
    forced = training_precision(False, "mixed_bfloat16", [], ("avx512_bf16",))
    assert forced.policy == "float32" and "differ" in forced.reason


def test_the_policy_of_older_run_records_is_read_from_their_flags():
    assert recorded_policy(None) is None and recorded_policy({}) is None
    assert recorded_policy({"gpu": {"policy": "mixed_float16"}}) == "mixed_float16"
    assert recorded_policy({"gpu": {"n_gpus": 0, "mixed_precision": True}}) == "mixed_bfloat16"
    assert recorded_policy({"gpu": {"n_gpus": 2, "mixed_precision": True}}) == "mixed_float16"
    assert recorded_policy({"gpu": {"n_gpus": 0, "mixed_precision": False}}) == "float32"


def test_xla_is_off_on_a_cpu_keras_decides_on_a_gpu_and_options_win():
    assert choose_jit_compile(None, on_gpu=False)[0] is False
    assert choose_jit_compile(None, on_gpu=True)[0] == "auto"
    assert choose_jit_compile(True, on_gpu=False)[0] is True
    assert choose_jit_compile(False, on_gpu=True)[0] is False


def test_importing_galaxytrain_asks_for_onednn_on_x86(monkeypatch):
    import platform

    import galaxytrain  # noqa: F401 - its import set the variable where unset

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("oneDNN is asked for on x86 only")
    import os

    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":
        pytest.skip("TF_ENABLE_ONEDNN_OPTS=0 was set for this run")
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert onednn_enabled()


def test_flops_are_counted_from_the_layers():
    """A net whose multiply-adds are counted by hand: two convolutions (one strided) and a dense layer."""
    import keras

    from galaxytrain.models.cost import forward_flops, training_flops

    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)             # 12x12 outputs, 27 inputs each
    x = keras.layers.Conv2D(4, 3, strides=2, padding="valid")(x)      # 5x5 outputs, 72 inputs each
    x = keras.layers.MaxPooling2D(5)(x)                               # not counted
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(6)(x)                                # 4 -> 6
    model = keras.Model(inputs, outputs)
    by_hand = 2 * (12 * 12 * 27 * 8 + 5 * 5 * 72 * 4 + 4 * 6)
    assert forward_flops(model) == by_hand
    assert training_flops(model) == 3 * by_hand


def test_galaxy_parts_counts_every_part():
    """Eight parts of 40 px through one stack: eight times the stack's cost for one image."""
    from galaxytrain.models import create_model
    from galaxytrain.models.cost import forward_flops

    model = create_model("galaxy_parts", (64, 64, 3), head="tree")
    per_part = 2 * 9 * (40 * 40 * 3 * 32 + 20 * 20 * 32 * 64 + 10 * 10 * (64 * 128 + 128 * 128) + 5 * 5 * 128 * 256)
    dense = 2 * (8 * 2 * 2 * 256 * 256 + 256 * 37)
    assert forward_flops(model) == 8 * per_part + dense


def test_fit_says_which_precision_and_xla_and_records_them(make_galaxy_file, tmp_path):
    from galaxytrain.config import FitConfig
    from galaxytrain.training import fit

    data = make_galaxy_file(n=40, size=24, seed=2)
    lines: list[str] = []
    fit(FitConfig(data=data, out=tmp_path / "run", epochs=1, batch_size=8, model="galaxy_cnn", progress=False),
        log=lines.append)
    expected = training_precision(None)
    assert any(line.startswith(f"precision: {expected.policy}") and expected.reason in line for line in lines)
    assert any(line.startswith("XLA: off (") for line in lines)
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["gpu"]["policy"] == expected.policy and record["gpu"]["jit_compile"] is False
    assert recorded_policy(record) == expected.policy


def test_a_run_trained_in_another_precision_resumes_in_this_hardware_s_and_says_so(make_galaxy_file, tmp_path):
    """config.json says the first epoch was bfloat16 on a CPU without native units here (imitated by
    rewriting the record): the second epoch runs in float32 and the log says why."""
    from galaxytrain.config import FitConfig
    from galaxytrain.training import fit

    data = make_galaxy_file(n=40, size=24, seed=2)
    run = tmp_path / "run"
    options = dict(data=data, out=run, batch_size=8, model="galaxy_cnn", progress=False, mixed_precision=False)
    fit(FitConfig(epochs=1, **options), log=lambda line: None)
    record = json.loads((run / "config.json").read_text())
    record["gpu"]["policy"] = "mixed_float16"  # trained on a GPU; no GPU here
    (run / "config.json").write_text(json.dumps(record))
    lines: list[str] = []
    result = fit(FitConfig(epochs=2, **{**options, "mixed_precision": None}), log=lines.append)
    assert result.epochs_done == 2 and result.initial_epoch == 1
    here = training_precision(None).policy
    assert any(line.startswith(f"precision: {here}") and "computed in mixed_float16" in line for line in lines)
    assert np.isfinite(result.history[-1]["loss"])


def test_a_bfloat16_model_predicts_in_float32_where_bfloat16_is_not_native(tmp_path):
    """The architecture rebuilt in float32 with the file's weights: the same answers to bfloat16's rounding."""
    import keras

    from galaxytrain.compute import inference_policy
    from galaxytrain.models import create_model, load_model_for_prediction, saved_policy

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(1)
        model = create_model("galaxy_parts", (32, 32, 3), head="tree")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    path = tmp_path / "bf16.keras"
    model.save(path)
    assert saved_policy(path) == "mixed_bfloat16"
    assert inference_policy("mixed_bfloat16", [], ()) == "float32"
    assert inference_policy("mixed_bfloat16", [], ("amx_bf16",)) == "mixed_bfloat16"
    assert inference_policy("mixed_float16", [(8, 0)], ()) == "mixed_float16"
    as_saved = load_model_for_prediction(path)
    in_float32 = load_model_for_prediction(path, lambda saved: "float32")
    assert {layer.dtype_policy.name for layer in in_float32.layers} == {"float32"}
    assert "mixed_bfloat16" in {layer.dtype_policy.name for layer in as_saved.layers}
    for a, b in zip(as_saved.get_weights(), in_float32.get_weights()):
        assert np.array_equal(a, b)
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    p32 = np.asarray(in_float32.predict_on_batch(x))
    assert p32.shape == (4, 37) and np.isfinite(p32).all()
    if cpu_bfloat16_units():  # under ONEDNN_MAX_CPU_ISA=AVX2 oneDNN refuses bfloat16 convolutions outright
        p16 = np.asarray(as_saved.predict_on_batch(x))
        assert np.allclose(p16, p32, atol=0.02) and not np.array_equal(p16, p32)
