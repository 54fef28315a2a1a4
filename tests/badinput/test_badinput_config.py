"""Hypothesis-made configurations, as mappings and as TOML files.

Every valid one (tests/badinput/badinput_configs.py) parses, and the engine runs
on it through random samples, failed reads and ticks without an exception, its
levels always among the three and fail-safe.  Every one broken in one known
place is a :class:`ConfigError` whose message names the key (its dotted path)
and the bad value.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from badinput_configs import BUILTIN, KNOWN_QUEUES, Table, configs, queue_names, to_toml
from badinput_mutations import MUTATIONS, Broken, broken_configs
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from admission import AdaptiveLimiter, WorkloadClass
from admission.policy import (
    ConfigError,
    FailureKind,
    Level,
    QueueSample,
    ReadFailure,
    parse_config,
    signal_value,
)
from admission.registry import Registry
from admission.testing import virtual_clock

pytestmark = pytest.mark.anyio

# derandomize: the same examples on every run (CI is reproducible, no example database).
PROFILE = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SHOWN = {"normal", "warning", "critical", "fail_safe"}
#: Examples tried per test, and the mutation kinds seen (printed by the last test).
TRIED: Counter[str] = Counter()


def _valid_counts(data: Table) -> None:
    TRIED["valid"] += 1
    event(f"presets: {len(data.get('presets', {}))}, queues: {len(data.get('queues', []))}")


@settings(PROFILE, max_examples=100)
@given(data=configs())
def test_a_valid_mapping_parses_as_written(data: Table) -> None:
    _valid_counts(data)
    config = parse_config(data)
    assert config.requested_preset == data.get("preset", "balanced")
    assert set(config.presets) == {*BUILTIN, *data.get("presets", {})}
    assert config.queues == tuple(entry["name"] for entry in data.get("queues", []))
    for entry in data.get("queues", []):
        for preset in config.presets.values():
            policy = preset.queue_policy(entry["name"])
            assert policy.critical_threshold > policy.warning_threshold
            for key, value in entry.items():
                if key != "name":  # a queue entry wins over every preset
                    assert getattr(policy, key) == value, (preset.name, key)


@settings(PROFILE, max_examples=40)
@given(data=configs())
def test_a_valid_file_loads_like_its_mapping(tmp_path_factory: Any, data: Table) -> None:
    TRIED["valid_toml"] += 1
    text = to_toml(data)
    assert tomllib.loads(text) == data  # the writer is faithful
    path = tmp_path_factory.mktemp("config") / "admission.toml"
    path.write_text(text, encoding="utf-8")
    from admission.policy import load_config

    assert load_config(path, environ={}) == parse_config(data)


# -- the engine on valid configurations -------------------------------------------------


#: One queue's reading for one tick, its queue and time filled in later: nothing, a
#: sample (any counts, rates and ages in range) or a failed read of any kind.
readings = st.one_of(
    st.none(),
    st.tuples(
        st.integers(0, 10**12),
        st.none() | st.integers(0, 10**12),
        st.none() | st.integers(0, 1000),
        st.none() | st.floats(0, 1e6),
        st.none() | st.floats(0, 1e6),
        st.none() | st.floats(0, 1e6),
        st.none() | st.floats(0, 1e6),
        st.sampled_from(["ok", "degraded"]),
    ),
    st.tuples(st.sampled_from(FailureKind), st.text(max_size=20)),
)
Reading = tuple[Any, ...] | None


def observation(queue: str, now: float, reading: Reading) -> QueueSample | ReadFailure | None:
    if reading is None:
        return None
    if len(reading) == 2:
        return ReadFailure(queue, now, *reading)
    ready, unacked, consumers, publish, deliver, ack, age, health = reading
    return QueueSample(
        queue, now, ready, unacked, consumers, publish, deliver, ack, age, health=health
    )


@dataclass
class Tracker:
    """What the design says each queue's telemetry must show, counted independently."""

    registry: Registry
    started: float

    def __post_init__(self) -> None:
        self.failures: dict[str, int] = dict.fromkeys(self.registry.queues, 0)
        self.last_good: dict[str, float] = dict.fromkeys(self.registry.queues, self.started)

    def feed(self, observations: dict[str, QueueSample | ReadFailure]) -> None:
        for queue, seen in observations.items():
            policy = self.registry.engine.queue_policy(self.registry.state, queue)
            if isinstance(seen, QueueSample) and signal_value(seen, policy.signal) is not None:
                self.failures[queue], self.last_good[queue] = 0, seen.sampled_at
            else:  # a failed read, or a sample that cannot tell the queue's signal
                self.failures[queue] += 1

    def check(self, now: float) -> None:
        status = self.registry.status()
        status.model_dump_json()  # the contract serializes whatever the values
        assert status.queue_pressure_level in SHOWN - {"fail_safe"}
        fail_safe = set()
        for queue in status.queue_states:
            policy = self.registry.engine.queue_policy(self.registry.state, queue.queue)
            assert queue.severity in SHOWN
            assert queue.fail_safe == (queue.severity == "fail_safe")
            assert queue.telemetry.consecutive_failures == self.failures[queue.queue]
            stale = now - self.last_good[queue.queue] >= policy.stale_after_seconds
            if stale or self.failures[queue.queue] >= policy.failure_threshold:
                assert queue.fail_safe, (queue.queue, queue.telemetry)
            if queue.fail_safe:
                fail_safe.add(queue.queue)
                assert queue.fail_safe_reason
        conservative = self.registry.config.get_preset("conservative")
        for klass in status.class_states:
            assert klass.level in SHOWN
            assert klass.fail_safe == bool(fail_safe & set(klass.watches)), klass
            assert klass.fail_safe == (klass.level == "fail_safe")
            # No overrides here: the requested preset's class, or conservative's in fail-safe.
            own = self.registry.engine.preset.classes[klass.class_name]
            if klass.fail_safe:
                limits = conservative.classes.get(klass.class_name, own).critical
            else:
                limits = own.limits(Level(klass.level))
            assert (klass.active_parallelism, klass.rate, klass.burst) == (
                limits.parallelism,
                limits.rate,
                limits.burst,
            )
            assert 0 <= klass.minimum_floor <= klass.active_parallelism
            assert all(limiter.retune_error is None for limiter in klass.limiters), klass


steps = st.floats(0, 60) | st.floats(0, 1e5) | st.sampled_from([0.0, 5.0, 15.0])
#: Each tick: how long before it, and a reading for each of up to 7 queues.
ticks = st.lists(
    st.tuples(steps, st.lists(readings, min_size=7, max_size=7)), min_size=8, max_size=25
)


# Everything is drawn before the body runs: a draw inside an async test that runs
# out of data would end its task with hypothesis' StopTest, unretrieved.
@settings(PROFILE, max_examples=40)
@given(data=configs(), plan=ticks)
async def test_the_engine_runs_on_any_valid_configuration(
    data: Table, plan: list[tuple[float, list[Reading]]]
) -> None:
    TRIED["engine_runs"] += 1
    TRIED["engine_ticks"] += len(plan)
    config = parse_config(data)
    with virtual_clock() as clock:
        registry = Registry(config, clock=clock)
        registry.watch(KNOWN_QUEUES)
        classes = [WorkloadClass(name) for name in registry.engine.preset.classes]
        registry.add_limiter(AdaptiveLimiter("fuzz", rate=1, burst=1, classes=classes))
        tracker = Tracker(registry, clock.monotonic())
        tracker.check(clock.monotonic())
        for seconds, tick in plan:
            await clock.advance(seconds)
            now = clock.monotonic()
            observations = {}
            for queue, reading in zip(registry.queues, tick, strict=False):
                seen = observation(queue, now, reading)
                if seen is not None:
                    observations[queue] = seen
            registry.observe(observations)
            tracker.feed(observations)
            tracker.check(now)


@settings(PROFILE, max_examples=40)
@given(data=configs(), scope=st.sampled_from(["queue", "class"]), name=queue_names)
def test_an_override_of_an_unknown_queue_or_class_names_it(
    data: Table, scope: str, name: str
) -> None:
    TRIED["unknown_override_target"] += 1
    with virtual_clock() as clock:
        registry = Registry(parse_config(data), clock=clock)
        known = registry.queues if scope == "queue" else tuple(registry.engine.preset.classes)
        if name in known:
            assert registry.add_override(scope, name, level="critical", ttl_seconds=60).name == name
            return
        with pytest.raises(ConfigError) as info:
            registry.add_override(scope, name, level="critical", ttl_seconds=60)
        assert f"{scope}={name!r} is unknown" in str(info.value)
        assert registry.status().overrides == ()


# -- invalid configurations ---------------------------------------------------------


def _check_named(broken: Broken, error: ConfigError) -> None:
    message = str(error)
    for fragment in broken.named:
        assert fragment in message, (broken.kind, fragment, message)


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
@settings(PROFILE, max_examples=30)
@given(run=st.data())
def test_a_configuration_broken_in_one_place_is_an_error_naming_it(
    kind: str, run: st.DataObject
) -> None:
    broken = run.draw(broken_configs(kind), label="broken")
    TRIED[kind] += 1
    with pytest.raises(ConfigError) as info:
        parse_config(broken.data, preset=broken.env_preset)
    _check_named(broken, info.value)


#: A line TOML cannot read, and how many lines after it the error is found.
SYNTAX_ERRORS = {
    "no key": ("= 1", 0),
    "unclosed table header": ("[presets", 0),
    "unterminated string": ('preset = "balanced', 0),
    "bare word": ("balanced", 0),
    "unclosed array": ("queues = [1, 2", 1),  # the array runs on to the next line
    "duplicate key": ("zz_twice = 1\nzz_twice = 2", 1),
    "not utf-8": ("preset = '\udcff'", 0),  # a lone byte 0xff once encoded
}


@st.composite
def broken_files(draw: st.DrawFn, kind: str) -> tuple[bytes, int | None]:
    """A valid file with a line TOML cannot read, and the line its error must name."""
    text = to_toml(draw(configs()))
    lines = text[:-1].split("\n") if text else []  # not splitlines: strings may hold U+2028
    at = draw(st.integers(0, len(lines)))
    bad, after = SYNTAX_ERRORS[kind]
    text = "\n".join([*lines[:at], *bad.split("\n"), *lines[at:]]) + "\n"
    if kind == "unclosed array" and at == len(lines):
        return text.encode(), None  # nothing follows: "at end of document"
    return text.encode("utf-8", "surrogateescape"), at + 1 + after


@pytest.mark.parametrize("kind", list(SYNTAX_ERRORS))
@settings(PROFILE, max_examples=10)
@given(run=st.data())
def test_a_file_that_is_not_toml_is_an_error_naming_file_and_line(
    tmp_path_factory: Any, kind: str, run: st.DataObject
) -> None:
    content, line = run.draw(broken_files(kind), label="file")
    TRIED[f"toml: {kind}"] += 1
    path = tmp_path_factory.mktemp("broken") / "admission.toml"
    path.write_bytes(content)
    from admission.policy import load_config

    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert message.startswith(f"{path}: not valid TOML: "), message
    if kind == "not utf-8":
        assert "not UTF-8" in message
    if line is None:
        assert message.endswith("(at end of document)"), message
    else:
        assert f"at line {line}," in message, (kind, message)


def test_a_config_path_that_is_not_a_readable_file_is_an_error_naming_it(tmp_path: Any) -> None:
    from admission.policy import load_config

    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={})
    assert str(info.value) == f"config file={str(tmp_path)!r}: cannot read it (Is a directory)"
    with pytest.raises(ConfigError) as info:
        load_config(None, environ={"ADMISSION_CONFIG": str(tmp_path / "nope.toml")})
    assert str(info.value).startswith("ADMISSION_CONFIG=")
    assert str(info.value).endswith(": no such file")


def test_every_mutation_kind_was_tried(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last in this module: each kind of breakage was generated (and prints the counts)."""
    if not TRIED:
        pytest.skip("run with the module's other tests")
    kinds = [*MUTATIONS, *(f"toml: {kind}" for kind in SYNTAX_ERRORS)]
    missing = [kind for kind in kinds if TRIED[kind] == 0]
    assert not missing, f"never generated: {missing}"
    with capsys.disabled():
        print("\nbad-input config examples:", dict(sorted(TRIED.items())))
