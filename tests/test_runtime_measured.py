"""Measured automatic choices (resnet.runtime.measured): the chooser, its cache, and what training does with it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from resnet.config import SystemConfig
from resnet.runtime import measured, resolve_runtime
from resnet.runtime.measured import ChoiceCache, Decision, cache_key, decide, measure
from resnet.train import load_config, train
from test_train_fake_data import make_fake_bundle


class FakeClock:
    """A timer that advances only when a candidate's step runs: each step costs its candidate's seconds."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def step(self, seconds: float):
        def run() -> None:
            self.now += seconds

        return lambda: run

    def cpu(self, share: float):
        """A process clock: this process got ``share`` of its threads' CPU time since the start."""
        return lambda: self.now * share * torch.get_num_threads()


@pytest.mark.parametrize(("a", "b", "winner"), [(0.1, 0.2, "a"), (0.3, 0.15, "b")])
def test_the_faster_candidate_wins_either_way(a: float, b: float, winner: str) -> None:
    clock = FakeClock()
    rates, _ = measure({"a": clock.step(a), "b": clock.step(b)}, images_per_call=10, timer=clock)
    assert measured.fastest(rates) == winner
    assert rates["a"] == pytest.approx(10 / a) and rates["b"] == pytest.approx(10 / b)


def test_a_hopeless_or_failing_candidate_is_dropped_after_its_warmup() -> None:
    clock = FakeClock()

    def broken():
        raise RuntimeError("no bf16 kernel for this layout")

    rates, _ = measure({"fast": clock.step(0.1), "slow": clock.step(1.0), "broken": broken}, 1, timer=clock)
    assert set(rates) == {"fast"}


def test_the_key_separates_machines_torch_versions_and_shapes(monkeypatch) -> None:
    cpu = torch.device("cpu")
    base = cache_key("train", cpu, model="resnet20", batch=[128, 3, 32, 32], world_size=1)
    assert base == cache_key("train", cpu, model="resnet20", batch=[128, 3, 32, 32], world_size=1)
    assert base != cache_key("train", cpu, model="resnet20", batch=[64, 3, 32, 32], world_size=1)
    assert base != cache_key("train", cpu, model="resnet20", batch=[128, 3, 32, 32], world_size=2)
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    assert cache_key("train", cpu, model="resnet20", batch=[128, 3, 32, 32], world_size=1) != base
    monkeypatch.undo()
    monkeypatch.setattr(measured, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert cache_key("train", cpu, model="resnet20", batch=[128, 3, 32, 32], world_size=1) != base
    monkeypatch.setattr(measured, "cpu_model", lambda: "Another CPU")
    assert "Another CPU" in cache_key("train", cpu)["machine"]


@pytest.mark.parametrize(
    "content", [b"{not json", b"\xff\xfe\x00", b'{"version": 0, "entries": {}}', b"[1, 2]", b'{"version": 1}']
)
def test_an_unreadable_or_foreign_cache_is_ignored_with_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "choices.json"
    path.write_bytes(content)
    warnings: list[str] = []
    cache = ChoiceCache(path, warn=warnings.append)
    key = {"kind": "train", "model": "resnet8"}
    assert cache.get(key) is None
    assert len(warnings) == 1 and str(path) in warnings[0] and "\n" not in warnings[0]
    cache.put(key, Decision("fp32 NCHW", "measured", {"fp32 NCHW": 10.0}))  # the bad file is replaced
    assert ChoiceCache(path).get(key) == Decision("fp32 NCHW", "cached", {"fp32 NCHW": 10.0})


def test_a_cache_that_cannot_be_written_costs_a_warning_not_the_run(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    warnings: list[str] = []
    cache = ChoiceCache(blocker / "choices.json", warn=warnings.append)
    cache.put({"kind": "x"}, Decision("a", "measured", {"a": 1.0}))
    assert len(warnings) == 1 and "measured again" in warnings[0]


def test_decide_uses_the_cache_measures_once_and_retunes_on_request(monkeypatch, tmp_path: Path) -> None:
    clock = FakeClock()
    calls: list[str] = []

    def candidate(name: str, seconds: float):
        def build():
            calls.append(name)
            return clock.step(seconds)()

        return build

    original = measured.measure
    timers = {"timer": clock, "cpu_clock": clock.cpu(share=1.0)}  # every thread busy with the candidates
    monkeypatch.setattr(measured, "measure", lambda c, n, **kw: original(c, n, **{**kw, **timers}))
    cache = ChoiceCache(tmp_path / "choices.json")
    rule = Decision("a", "rule", reason="the flag rule")
    key = {"kind": "test"}
    options = {"a": candidate("a", 0.2), "b": candidate("b", 0.1)}
    assert decide(key, rule, options, 8, work_calls=10, cache=cache) == rule  # too short to repay a measurement
    assert calls == []
    chosen = decide(key, rule, options, 8, work_calls=10_000, cache=cache)
    assert chosen.choice == "b" and chosen.source == "measured" and calls == ["a", "b"]
    again = decide(key, rule, options, 8, work_calls=10_000, cache=cache)
    assert again.choice == "b" and again.source == "cached" and calls == ["a", "b"]  # not measured again
    assert decide(key, rule, options, 8, work_calls=10, cache=cache).source == "cached"  # short runs use it too
    retuned = decide(key, rule, options, 8, work_calls=10, retune=True, cache=cache)
    assert retuned.source == "measured" and calls == ["a", "b", "a", "b"]
    assert decide(key, rule, {"a": options["a"]}, 8, work_calls=10_000, cache=cache) == rule  # one candidate


def test_a_measurement_beside_other_work_decides_the_run_but_is_not_cached(monkeypatch, tmp_path: Path) -> None:
    clock, warnings = FakeClock(), []
    original = measured.measure
    share = {"value": 0.4}  # two other processes on two cores: this one got 40% of its threads' time
    monkeypatch.setattr(
        measured,
        "measure",
        lambda c, n, **kw: original(c, n, **{**kw, "timer": clock, "cpu_clock": clock.cpu(share["value"])}),
    )
    cache = ChoiceCache(tmp_path / "choices.json", warn=warnings.append)
    rule, key = Decision("a", "rule"), {"kind": "test"}
    options = {"a": clock.step(0.2), "b": clock.step(0.1)}
    busy = decide(key, rule, options, 8, work_calls=10_000, cache=cache, label="the test's candidates")
    assert busy.choice == "b" and busy.source == "measured" and "not cached" in busy.describe()
    assert len(warnings) == 1 and "competed for the CPU while measuring the test's candidates" in warnings[0]
    assert "40%" in warnings[0] and cache.get(key) is None
    assert decide(key, rule, options, 8, work_calls=10_000, cache=cache).source == "measured"  # measured again
    share["value"] = 0.95  # a quiet machine: cached
    quiet = decide(key, rule, options, 8, work_calls=10_000, cache=cache)
    assert quiet.choice == "b" and cache.get(key) == dataclasses.replace(quiet, source="cached")
    assert len(warnings) == 2
    share["value"] = 0.1  # a GPU's host thread waits in its syncs: its CPU share says nothing of the load
    assert decide({"kind": "gpu"}, rule, options, 8, work_calls=10_000, cache=cache, on_cpu=False).source == "measured"
    assert cache.get({"kind": "gpu"}) is not None and len(warnings) == 2


def test_explicit_flags_leave_nothing_to_measure() -> None:
    rule = resolve_runtime(SystemConfig(device="cpu", amp="off", channels_last="on"))
    assert list(measured.training_candidates(SystemConfig(amp="off", channels_last="on"), rule.device, rule)) == [
        "fp32 channels-last"
    ]
    open_layout = measured.training_candidates(SystemConfig(amp="off"), rule.device, rule)
    assert set(open_layout) == {"fp32 channels-last", "fp32 NCHW"}
    work = measured.Workload("x", (2, 2), 2, 10**9)
    runtime, decision = measured.decide_training(
        rule, SystemConfig(amp="off", channels_last="on"), torch.nn.Linear(2, 2), work
    )
    assert runtime == rule and decision.source == "requested"


def test_bf16_is_a_candidate_only_where_onednn_has_bf16_kernels(monkeypatch) -> None:
    rule = resolve_runtime(SystemConfig(device="cpu", amp="off"))
    monkeypatch.setattr(measured, "cpu_bf16_kernels", lambda: True)
    assert "bf16 channels-last" in measured.training_candidates(SystemConfig(), rule.device, rule)
    monkeypatch.setattr(measured, "cpu_bf16_kernels", lambda: False)
    assert "bf16 channels-last" not in measured.training_candidates(SystemConfig(), rule.device, rule)


def tiny(run_dir: Path, iterations: int, **system) -> object:
    return load_config(
        "cifar-paper",
        {
            "model.name": "resnet8",
            "data.dataset": "fake",
            "data.batch_size": 16,
            "train.iterations": iterations,
            "run_dir": str(run_dir),
            "log.progress": "none",
            "log.tensorboard": False,
            "system.device": "cpu",
            **{f"system.{k}": v for k, v in system.items()},
        },
    )


def test_training_runs_the_measured_choice_and_a_resume_keeps_it(monkeypatch, tmp_path: Path) -> None:
    preferred = {"value": "fp32 NCHW"}

    def fake_measure(candidates, images_per_call, **_):
        return {name: (100.0 if name == preferred["value"] else 50.0) for name in candidates}, 1.0

    monkeypatch.setattr(measured, "measure", fake_measure)
    monkeypatch.setattr(measured, "cpu_bf16_kernels", lambda: False)
    run = tmp_path / "run"
    summary = train(tiny(run, 2, retune=True), data=make_fake_bundle(num_train=32, batch_size=16))
    assert summary["runtime_choice"]["choice"] == "fp32 NCHW" and summary["runtime_choice"]["source"] == "measured"
    assert summary["amp_reason"] == "fp32 NCHW — measured 100 img/s against fp32 channels-last 50 img/s"
    assert "NCHW" in json.loads((run / "summary.json").read_text())["runtime_choice"]["choice"]
    [entry] = json.loads(ChoiceCache().path.read_text())["entries"].values()  # remembered for the next run
    assert entry["key"]["model"] == "resnet8 {}" and entry["key"]["batch"][0] == 16
    assert ChoiceCache().get(entry["key"]) == Decision.from_dict(summary["runtime_choice"], source="cached")

    preferred["value"] = "fp32 channels-last"  # the machine now measures otherwise: the resumed run keeps its own
    resumed = train(tiny(run, 4, retune=True), data=make_fake_bundle(num_train=32, batch_size=16), resume=True)
    assert resumed["runtime_choice"]["choice"] == "fp32 NCHW" and resumed["runtime_choice"]["source"] == "resumed"
    assert "the run's own choice" in resumed["amp_reason"]


@pytest.mark.parametrize("winner", ["compiled", "eager"])
def test_auto_compiles_a_long_cpu_run_only_when_the_compiled_step_measures_faster(monkeypatch, winner: str) -> None:
    import resnet.runtime as runtime

    monkeypatch.setattr(runtime, "has_cpp_compiler", lambda: True)
    timed: list[list[str]] = []

    def fake_measure(candidates, images_per_call, **_):
        timed.append(list(candidates))
        return {name: (300.0 if name == winner else 250.0) for name in candidates}, 1.0

    monkeypatch.setattr(measured, "measure", fake_measure)
    system = SystemConfig(device="cpu", amp="off")
    rule = resolve_runtime(system)
    long_run = measured.Workload("resnet8 {}", (16, 3, 8, 8), 10, runtime.COMPILE_MIN_ITERATIONS)
    decision = measured.decide_compile(rule, system, torch.nn.Linear(2, 2), long_run)
    assert decision.choice == winner and decision.source == "measured" and timed == [["eager", "compiled"]]
    assert decision.describe().startswith(f"{winner} — measured 300 img/s against ")
    cached = measured.decide_compile(rule, system, torch.nn.Linear(2, 2), long_run)
    assert cached.choice == winner and cached.source == "cached" and len(timed) == 1  # measured once per machine
    other_layout = dataclasses.replace(rule, channels_last=not rule.channels_last)
    assert measured.decide_compile(other_layout, system, torch.nn.Linear(2, 2), long_run).source == "measured"

    assert measured.fastest({"eager": 100.0, "compiled": 104.0}, {"compiled": measured.COMPILE_MARGIN}) == "eager"
    assert measured.fastest({"eager": 100.0, "compiled": 106.0}, {"compiled": measured.COMPILE_MARGIN}) == "compiled"
    short = dataclasses.replace(long_run, iterations=860)  # the demo: the rule, eager, nothing compiled or timed
    rule_reason = f"--compile auto compiles CPU runs of {runtime.COMPILE_MIN_ITERATIONS}+ iterations and GPU runs"
    assert measured.decide_compile(rule, system, torch.nn.Linear(2, 2), short) == Decision(
        "eager", "rule", {}, rule_reason
    )
    for flag, choice in (("on", "compiled"), ("off", "eager")):  # an explicit flag is obeyed, never measured
        explicit = measured.decide_compile(rule, SystemConfig(compile=flag), torch.nn.Linear(2, 2), long_run)
        assert explicit.choice == choice and explicit.source == "requested"
    monkeypatch.setattr(runtime, "has_cpp_compiler", lambda: False)
    assert measured.decide_compile(rule, system, torch.nn.Linear(2, 2), long_run).choice == "eager"
    assert len(timed) == 2


def test_a_measured_compile_choice_is_saved_and_a_resume_keeps_it(monkeypatch, tmp_path: Path) -> None:
    import resnet.runtime as runtime

    monkeypatch.setattr(runtime, "has_cpp_compiler", lambda: True)
    monkeypatch.setattr(runtime, "COMPILE_MIN_ITERATIONS", 2)
    preferred = {"value": "eager"}  # eager wins here, so that the test trains without compiling

    def fake_measure(candidates, images_per_call, **_):
        return {
            name: (100.0 if name in (preferred["value"], "fp32 channels-last") else 50.0) for name in candidates
        }, 1.0

    monkeypatch.setattr(measured, "measure", fake_measure)
    monkeypatch.setattr(measured, "cpu_bf16_kernels", lambda: False)
    run = tmp_path / "run"
    summary = train(tiny(run, 2, retune=True), data=make_fake_bundle(num_train=32, batch_size=16))
    assert summary["compile_choice"] == {
        "choice": "eager", "source": "measured", "rates": {"eager": 100.0, "compiled": 50.0},
        "reason": "compiled must measure 5% faster",
    }  # fmt: skip
    preferred["value"] = "compiled"  # the machine now measures otherwise: the resumed run keeps its own
    resumed = train(tiny(run, 4, retune=True), data=make_fake_bundle(num_train=32, batch_size=16), resume=True)
    assert resumed["compile_choice"]["choice"] == "eager" and resumed["compile_choice"]["source"] == "resumed"


@pytest.mark.parametrize("winner", ["fp32 eager", "fp32 onnxruntime"])
def test_inference_auto_runs_the_measured_candidate(monkeypatch, winner: str) -> None:
    pytest.importorskip("onnxruntime")
    from resnet.inference.fast import prepare_for_inference
    from resnet.models import create_model

    seen: list[str] = []

    def fake_measure(candidates, images_per_call, **_):
        seen.extend(candidates)
        for build in candidates.values():
            build()()  # each candidate is built and runs
        return {name: (100.0 if name == winner else 50.0) for name in candidates}, 1.0

    monkeypatch.setattr(measured, "measure", fake_measure)
    monkeypatch.setattr(measured, "cpu_bf16_kernels", lambda: False)
    model = create_model("resnet8", num_classes=10).eval()
    fast = prepare_for_inference(model, "cpu", backend="auto", batch_shape=(4, 3, 32, 32), work_images=10**6)
    assert set(seen) == {"fp32 eager", "fp32 onnxruntime"}
    assert fast.choices["backend"] == winner.split()[1] and fast.choices["measured"]["choice"] == winner
    assert fast.choices["precision_reason"].startswith(f"{winner} — measured 100 img/s")
    images = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(fast(images), model(images), atol=1e-4, rtol=1e-4)
    seen.clear()
    short = prepare_for_inference(model, "cpu", backend="auto", batch_shape=(4, 3, 32, 32), work_images=4)
    assert seen == [] and short.choices["measured"]["source"] == "cached"  # a short job takes the cached decision
    plain = prepare_for_inference(model, "cpu", precision="fp32", backend="eager", batch_shape=(4, 3, 32, 32))
    assert "measured" not in plain.choices  # nothing left to choose


def test_jobs_auto_follows_the_measurement_and_caches_it(monkeypatch, capsys) -> None:
    from resnet.experiments import parallel

    measured_settings: list[tuple[int, int]] = []

    share = {"value": 0.5}  # first measured beside other work: not cached

    def fake(model: str, processes: int, threads: int, seconds: float) -> tuple[float, float]:
        measured_settings.append((processes, threads))
        return (300.0 if processes == 1 else 200.0), share["value"]  # here one net on both cores wins

    monkeypatch.setattr(parallel, "measure_processes", fake)
    monkeypatch.setattr(parallel, "cpu_cores", lambda: 2)
    said: list[str] = []
    assert parallel.resolve_jobs("auto", 4, on_gpu=False, iterations=100, say=said.append) == 2  # short: the rule
    assert measured_settings == [] and said == []
    assert parallel.resolve_jobs("auto", 4, on_gpu=False, iterations=10**6, say=said.append) == 1
    assert "not cached" in said[0] and measured_settings == [(1, 2), (2, 1)]
    assert "other work competed for the CPU while measuring --jobs auto" in capsys.readouterr().err
    share["value"] = 0.97  # a quiet machine: measured again, and cached
    said.clear()
    assert parallel.resolve_jobs("auto", 4, on_gpu=False, iterations=10**6, say=said.append) == 1
    assert measured_settings == [(1, 2), (2, 1)] * 2 and "one net on all cores — measured 300 img/s" in said[0]
    assert parallel.resolve_jobs("auto", 4, on_gpu=False, iterations=100, say=said.append) == 1  # cached
    assert measured_settings == [(1, 2), (2, 1)] * 2 and "cached" in said[-1]
    assert parallel.resolve_jobs("auto", 4, on_gpu=True) == 1 and parallel.resolve_jobs(3, 4, on_gpu=False) == 3
