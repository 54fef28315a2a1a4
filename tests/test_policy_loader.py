"""Reading the configuration: the TOML contract, presets and their errors, the environment."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from policy_helpers import CONVERSION, NEW_FILE, PRESETS, TITUS

from admission.policy import ConfigError, Signal, load_config, parse_config

# DESIGN.md "Configuration", verbatim.
DESIGN_EXAMPLE = """\
preset = "balanced"              # the requested preset (ADMISSION_PRESET overrides)
poll_interval_seconds = 5

[telemetry.rabbitmq]             # absent: no broker telemetry
url = "http://127.0.0.1:15672"   # the management API
username = "guest"
password = "guest"               # or password_env = "RABBITMQ_PASSWORD"
vhost = "/"

[[queues]]                       # the queues to watch
name = "files-new_file"
# optional per-queue overrides of the preset:
# warning_threshold, critical_threshold, exit_ratio, sustained_seconds,
# cooldown_seconds, stale_after_seconds, failure_threshold, recovery_seconds, signal

[presets.fast]                   # a user preset
extends = "balanced"
sustained_seconds = 3            # any queue-policy key, for every queue
cooldown_seconds = 6
[presets.fast.queues."files-new_file"]
warning_threshold = 5
critical_threshold = 10

[classes.expensive]              # workload classes (built-ins: standard, expensive)
watches = ["files-new_file"]
extensions = [".zip", ".7z", ".rar", ".iso", ".vhd", ".vhdx", ".dll", ".exe"]
"""


def _error(data: dict[str, Any], *, preset: str | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, preset=preset)
    return str(info.value)


def _fast(**top: Any) -> dict[str, Any]:
    return {"presets": {"fast": {"extends": "balanced", **top}}}


# -- the documented example ---------------------------------------------------


def test_the_design_example_parses() -> None:
    cfg = parse_config(tomllib.loads(DESIGN_EXAMPLE))
    assert cfg.requested_preset == "balanced"
    assert cfg.preset.name == "balanced"
    assert cfg.poll_interval_seconds == 5
    assert cfg.queues == (NEW_FILE,)
    rabbit = cfg.telemetry.rabbitmq
    assert rabbit is not None
    assert (rabbit.url, rabbit.username, rabbit.vhost) == ("http://127.0.0.1:15672", "guest", "/")
    assert rabbit.resolved_password().get_secret_value() == "guest"
    assert "password=SecretStr('**********')" in repr(rabbit)  # the password is a secret

    fast = cfg.get_preset("fast")
    new_file = fast.queue_policy(NEW_FILE)
    assert (new_file.warning_threshold, new_file.critical_threshold) == (5, 10)
    for queue in (NEW_FILE, CONVERSION, TITUS, "any-other-queue"):
        policy = fast.queue_policy(queue)
        assert (policy.sustained_seconds, policy.cooldown_seconds) == (3, 6), queue
        assert policy.recovery_seconds == 6, queue  # recovery defaults to the cooldown
    # Inherited from balanced where fast says nothing.
    conversion = fast.queue_policy(CONVERSION)
    assert (conversion.warning_threshold, conversion.critical_threshold) == (30, 80)
    assert set(fast.classes) == {"standard", "expensive"}

    for name in (*PRESETS, "fast"):
        expensive = cfg.get_preset(name).classes["expensive"]
        assert expensive.watches == (NEW_FILE,), name
        assert ".vhdx" in expensive.extensions
        assert cfg.get_preset(name).classes["standard"].watches == ()


def test_an_empty_configuration_is_balanced_with_defaults() -> None:
    for cfg in (parse_config(), parse_config({})):
        assert cfg.requested_preset == "balanced"
        assert cfg.poll_interval_seconds == 5
        assert cfg.queues == ()
        assert cfg.telemetry.rabbitmq is None
        assert set(cfg.presets) == set(PRESETS)


@pytest.mark.parametrize(("poll", "stale"), [(2, 15), (5, 15), (10, 30), (7.5, 22.5)])
def test_stale_after_defaults_to_three_polls_and_at_least_15_seconds(
    poll: float, stale: float
) -> None:
    cfg = parse_config({"poll_interval_seconds": poll, "queues": [{"name": "q"}]})
    for name in PRESETS:
        assert cfg.get_preset(name).queue_policy("q").stale_after_seconds == stale
        assert cfg.get_preset(name).default_queue.stale_after_seconds == stale


# -- choosing the preset ---------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_the_requested_preset_is_used(name: str) -> None:
    assert parse_config({"preset": name}).preset.name == name
    assert parse_config({}, preset=name).preset.name == name


def test_an_unknown_preset_is_an_error_never_a_fallback() -> None:
    text = _error({"preset": "turbo"})
    assert "preset='turbo'" in text
    assert "balanced" in text  # the known ones are listed
    assert "'turbo'" in _error({}, preset="turbo")
    assert "'Balanced'" in _error({"preset": "Balanced"})


# -- validation errors name the key and the value ------------------------------


def test_critical_not_above_warning_names_both_keys_and_values() -> None:
    text = _error({"queues": [{"name": "q", "warning_threshold": 50, "critical_threshold": 50}]})
    assert "queues['q']" in text
    assert "critical_threshold=50" in text
    assert "warning_threshold=50" in text
    text = _error(_fast(warning_threshold=100, critical_threshold=90))
    assert "presets.fast" in text
    assert "critical_threshold=90" in text
    assert "warning_threshold=100" in text


def test_a_queue_override_that_breaks_the_preset_ordering_names_the_queue() -> None:
    # balanced has critical 120 for other queues: warning 130 from [[queues]] clashes.
    text = _error({"queues": [{"name": "q", "warning_threshold": 130}]})
    assert "queues['q']" in text
    assert "warning_threshold=130" in text


@pytest.mark.parametrize("ratio", [0, 1, 1.2, -0.5])
def test_exit_ratio_outside_zero_one_is_refused(ratio: float) -> None:
    text = _error({"queues": [{"name": "q", "exit_ratio": ratio}]})
    assert f"exit_ratio={ratio!r}" in text
    text = _error(_fast(exit_ratio=ratio))
    assert f"presets.fast.exit_ratio={ratio!r}" in text


@pytest.mark.parametrize(
    "key", ["sustained_seconds", "cooldown_seconds", "recovery_seconds", "stale_after_seconds"]
)
def test_negative_windows_are_refused(key: str) -> None:
    text = _error({"queues": [{"name": "q", key: -5}]})
    assert f"{key}=-5" in text
    text = _error(_fast(**{key: -5}))
    assert f"presets.fast.{key}=-5" in text
    text = _error({"presets": {"fast": {"extends": "balanced", "queues": {"q": {key: -5}}}}})
    assert f"presets.fast.queues.q.{key}=-5" in text


def test_a_bad_poll_interval_is_refused() -> None:
    assert "poll_interval_seconds=0" in _error({"poll_interval_seconds": 0})


def test_a_floor_above_the_parallelism_names_preset_class_and_level() -> None:
    data = {
        "presets": {
            "tight": {
                "extends": "balanced",
                "classes": {"expensive": {"warning": {"minimum_floor": 4}}},
            }
        }
    }
    text = _error(data)
    assert "presets.tight.classes.expensive.warning" in text
    assert "minimum_floor=4" in text
    assert "parallelism=1" in text


def test_unknown_extends_is_refused() -> None:
    text = _error({"presets": {"fast": {"extends": "balanced_v2", "sustained_seconds": 3}}})
    assert "presets.fast.extends='balanced_v2'" in text
    assert "balanced" in text


@pytest.mark.parametrize(
    "presets",
    [
        {"a": {"extends": "a"}},
        {"a": {"extends": "b"}, "b": {"extends": "a"}},
        {"a": {"extends": "b"}, "b": {"extends": "c"}, "c": {"extends": "a"}},
    ],
)
def test_extends_cycles_are_refused(presets: dict[str, Any]) -> None:
    text = _error({"presets": presets})
    assert "cycle" in text
    assert "extends" in text
    for name in presets:
        assert name in text


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"presett": "balanced"}, "presett='balanced'"),
        ({"queues": [{"name": "q", "warning": 5}]}, "queues[0].warning=5"),
        (_fast(sustain_seconds=3), "presets.fast.sustain_seconds=3"),
        (
            {"presets": {"fast": {"extends": "balanced", "queues": {"q": {"crit": 1}}}}},
            "presets.fast.queues.q.crit=1",
        ),
        ({"classes": {"expensive": {"watch": ["q"]}}}, "classes.expensive.watch=['q']"),
        ({"telemetry": {"rabbitmq": {"host": "x"}}}, "telemetry.rabbitmq.host='x'"),
        ({"telemetry": {"redis": {}}}, "telemetry.redis={}"),
    ],
)
def test_unknown_keys_are_refused_by_name(data: dict[str, Any], named: str) -> None:
    assert named in _error(data)


def test_an_unknown_signal_is_refused() -> None:
    text = _error({"queues": [{"name": "q", "signal": "depth"}]})
    assert "signal='depth'" in text


def test_an_unknown_class_is_refused_by_name() -> None:
    text = _error({"classes": {"bulk": {"watches": ["q"]}}})
    assert "classes.bulk" in text
    # The known ones are listed.
    assert "expensive" in text
    assert "standard" in text


def test_a_standalone_user_preset_must_say_its_thresholds() -> None:
    text = _error({"presets": {"mine": {"sustained_seconds": 1, "cooldown_seconds": 2}}})
    assert "presets.mine.warning_threshold" in text
    assert "presets.mine.critical_threshold" in text


# -- user presets -----------------------------------------------------------------


def test_a_top_level_key_in_a_child_preset_applies_to_every_queue() -> None:
    # balanced sets warning_threshold per queue; a child's top-level value replaces them all.
    cfg = parse_config(_fast(warning_threshold=10, exit_ratio=0.5, failure_threshold=5))
    fast, balanced = cfg.get_preset("fast"), cfg.get_preset("balanced")
    for queue in (NEW_FILE, CONVERSION, TITUS, "other"):
        policy = fast.queue_policy(queue)
        assert policy.warning_threshold == 10, queue
        assert policy.exit_ratio == 0.5
        assert policy.failure_threshold == 5
        # What the child does not say comes from the parent.
        assert policy.critical_threshold == balanced.queue_policy(queue).critical_threshold
        assert policy.sustained_seconds == 60
    # The parent is untouched.
    assert balanced.queue_policy(CONVERSION).warning_threshold == 30


def test_a_child_preset_inherits_and_refines_classes() -> None:
    data = _fast()
    data["presets"]["fast"]["classes"] = {"standard": {"normal": {"parallelism": 9}}}
    fast = parse_config(data).get_preset("fast")
    assert fast.classes["standard"].normal.parallelism == 9
    assert fast.classes["standard"].normal.rate == 6  # balanced's
    assert fast.classes["expensive"] == parse_config().get_preset("balanced").classes["expensive"]


def test_a_preset_can_extend_a_user_preset() -> None:
    data = {
        "presets": {
            "fast": {"extends": "balanced", "sustained_seconds": 3},
            "faster": {"extends": "fast", "cooldown_seconds": 4},
        }
    }
    faster = parse_config(data, preset="faster").preset
    policy = faster.queue_policy(NEW_FILE)
    assert (policy.sustained_seconds, policy.cooldown_seconds) == (3, 4)
    assert (policy.warning_threshold, policy.critical_threshold) == (50, 120)


def test_a_builtin_preset_can_be_tuned_by_the_user() -> None:
    cfg = parse_config({"presets": {"balanced": {"sustained_seconds": 30}}})
    assert cfg.get_preset("balanced").queue_policy(CONVERSION).sustained_seconds == 30
    assert cfg.get_preset("balanced").queue_policy(CONVERSION).warning_threshold == 30
    assert cfg.get_preset("aggressive").queue_policy(CONVERSION).sustained_seconds == 90


@pytest.mark.parametrize("name", [*PRESETS, "fast"])
def test_queue_entries_apply_on_top_of_every_preset(name: str) -> None:
    data: dict[str, Any] = {
        **_fast(sustained_seconds=3),
        "queues": [
            {"name": NEW_FILE, "critical_threshold": 400, "cooldown_seconds": 33},
            {"name": "extra", "signal": "ready_plus_unacked", "failure_threshold": 7},
        ],
    }
    cfg = parse_config(data, preset=name)
    assert cfg.queues == (NEW_FILE, "extra")
    preset = cfg.preset
    new_file = preset.queue_policy(NEW_FILE)
    assert new_file.critical_threshold == 400
    assert new_file.cooldown_seconds == 33
    assert new_file.recovery_seconds == 33  # recovery follows the queue's own cooldown
    # Keys the entry does not give still come from the preset.
    assert new_file.warning_threshold == preset.default_queue.warning_threshold
    assert new_file.sustained_seconds == preset.default_queue.sustained_seconds
    extra = preset.queue_policy("extra")
    assert extra.signal is Signal.READY_PLUS_UNACKED
    assert extra.failure_threshold == 7
    assert extra.warning_threshold == preset.default_queue.warning_threshold
    # A queue not listed keeps the preset's defaults.
    assert preset.queue_policy("unlisted") == preset.default_queue


# -- load_config: the file and the environment ----------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "admission.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_config_reads_the_file_named_by_admission_config(tmp_path: Path) -> None:
    path = _write(tmp_path, DESIGN_EXAMPLE)
    cfg = load_config(environ={"ADMISSION_CONFIG": str(path)})
    assert cfg.requested_preset == "balanced"
    assert cfg.queues == (NEW_FILE,)
    assert "fast" in cfg.presets
    assert load_config(path, environ={}) == cfg


def test_admission_preset_replaces_the_file_preset(tmp_path: Path) -> None:
    path = _write(tmp_path, DESIGN_EXAMPLE)
    cfg = load_config(environ={"ADMISSION_CONFIG": str(path), "ADMISSION_PRESET": "fast"})
    assert cfg.requested_preset == "fast"
    assert cfg.preset.queue_policy(NEW_FILE).critical_threshold == 10
    cfg = load_config(path, environ={"ADMISSION_PRESET": "aggressive"})
    assert cfg.requested_preset == "aggressive"


def test_load_config_reads_the_real_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, 'preset = "conservative"\n[[queues]]\nname = "q"\n')
    monkeypatch.setenv("ADMISSION_CONFIG", str(path))
    monkeypatch.delenv("ADMISSION_PRESET", raising=False)
    cfg = load_config()
    assert (cfg.requested_preset, cfg.queues) == ("conservative", ("q",))
    monkeypatch.setenv("ADMISSION_PRESET", "aggressive")
    assert load_config().requested_preset == "aggressive"
    monkeypatch.setenv("ADMISSION_PRESET", "nope")
    with pytest.raises(ConfigError, match="'nope'"):
        load_config()


def test_load_config_without_a_file_uses_the_defaults() -> None:
    assert load_config(environ={}).requested_preset == "balanced"
    assert load_config(environ={"ADMISSION_PRESET": "aggressive"}).requested_preset == (
        "aggressive"
    )


def test_an_unknown_preset_from_the_environment_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, DESIGN_EXAMPLE)
    with pytest.raises(ConfigError, match="preset='balancd'"):
        load_config(path, environ={"ADMISSION_PRESET": "balancd"})


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="ADMISSION_CONFIG") as info:
        load_config(environ={"ADMISSION_CONFIG": str(missing)})
    assert str(missing) in str(info.value)
    # Given as an argument, the message names the argument, not the variable.
    with pytest.raises(ConfigError, match="config file=") as info:
        load_config(missing, environ={})
    assert "ADMISSION_CONFIG" not in str(info.value)


def test_invalid_toml_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "preset = \n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(path, environ={})
    assert str(path) in str(info.value)


def test_errors_in_the_file_name_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path, '[[queues]]\nname = "q"\nexit_ratio = 2\n')
    with pytest.raises(ConfigError, match=r"queues\[0\]\.exit_ratio=2"):
        load_config(path, environ={})


def test_password_env_is_read_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    data = {"telemetry": {"rabbitmq": {"password_env": "TEST_RABBIT_PASSWORD"}}}
    rabbit = parse_config(data).telemetry.rabbitmq
    assert rabbit is not None
    monkeypatch.delenv("TEST_RABBIT_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="TEST_RABBIT_PASSWORD"):
        rabbit.resolved_password()
    monkeypatch.setenv("TEST_RABBIT_PASSWORD", "s3cret")
    assert rabbit.resolved_password().get_secret_value() == "s3cret"
