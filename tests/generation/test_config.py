"""The config loader: defaults, the example file, validation messages and environment overrides."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from generation.config import Config, ConfigError, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "closeup.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, text), environ={} if environ is None else environ)


def sections_of(cls: type = Config) -> dict[str, type]:
    return {f.name: f.default_factory for f in dataclasses.fields(cls)}  # type: ignore[misc]


# --------------------------------------------------------------------------- defaults and the example


def test_defaults_without_a_file() -> None:
    config = load_config(None, environ={})
    assert config == Config()
    assert config.discord.token == ""
    assert config.faces.backend == "auto"
    assert config.faces.insightface_pack == "buffalo_l"
    assert config.images.max_bytes == 25 * 1024 * 1024
    assert config.images.allow_animation_first_frame is False
    assert config.logging.level == "INFO"
    assert config.logging.format == "text"


def test_defaults_ignore_unrelated_environment() -> None:
    environ = {"HOME": "/nowhere", "CLOSEUP_HOME": "/x", "PATH": "/bin", "OTHER__THING": "1"}
    assert load_config(None, environ=environ) == Config()


def test_example_file_loads_and_equals_the_defaults() -> None:
    assert load_config(EXAMPLE, environ={}) == Config()


def _example_sections() -> dict[str, str]:
    """The example file's text per [section] (comments included)."""
    text = EXAMPLE.read_text(encoding="utf-8")
    parts = re.split(r"^\[([a-z_]+)\]\s*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_example_file_documents_every_setting() -> None:
    example = _example_sections()
    assert set(example) == set(sections_of())
    for name, factory in sections_of().items():
        body = example[name]
        for f in dataclasses.fields(factory):
            assert re.search(rf"^{f.name} = ", body, flags=re.MULTILINE), (
                f"config.example.toml [{name}] does not show `{f.name} =`"
            )
        # and nothing in the example that the dataclass does not know
        keys = set(re.findall(r"^([a-z0-9_]+) =", body, flags=re.MULTILINE))
        assert keys == {f.name for f in dataclasses.fields(factory)}


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, '[faces]\nbackend = "dlib"\n')
    assert config.faces.backend == "dlib"
    assert config.faces.detect_max_side == Config().faces.detect_max_side
    assert config.images == Config().images


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.faces.backend = "dlib"  # type: ignore[misc]


# --------------------------------------------------------------------------- unknown names


def test_unknown_key_names_it_and_suggests_the_close_match(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, '[faces]\nbacknd = "dlib"\n')
    message = str(info.value)
    assert "faces.backnd" in message
    assert "did you mean faces.backend" in message


def test_unknown_key_without_close_match_lists_known_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "[logging]\nzzzzzz = 1\n")
    message = str(info.value)
    assert "logging.zzzzzz" in message
    assert "did you mean" not in message
    assert "level" in message and "format" in message


def test_unknown_section_names_it_and_suggests_the_close_match(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, '[face]\nbackend = "dlib"\n')
    message = str(info.value)
    assert "[face]" in message
    assert "did you mean [faces]" in message


def test_section_that_is_not_a_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"faces"):
        load(tmp_path, 'faces = "dlib"\n')


# --------------------------------------------------------------------------- wrong types


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('[images]\nmax_bytes = "big"\n', "images.max_bytes", "an integer"),
        ("[images]\nallow_animation_first_frame = 1\n", "images.allow_animation_first_frame", "true or false"),
        ("[images]\nmax_pixels = true\n", "images.max_pixels", "an integer"),
        ("[images]\nmax_pixels = 1.5e7\n", "images.max_pixels", "an integer"),
        ("[faces]\nbackend = 5\n", "faces.backend", "a string"),
        ('[faces]\nembeddings = "true"\n', "faces.embeddings", "true or false"),
    ],
)
def test_wrong_type_names_key_and_expected_type(tmp_path: Path, text: str, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    message = str(info.value)
    assert message.startswith(key + ":")
    assert f"expected {expected}" in message


# --------------------------------------------------------------------------- validators


def test_bad_backend_names_key_and_allowed_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, '[faces]\nbackend = "gpu"\n')
    message = str(info.value)
    assert "faces.backend" in message
    assert "'gpu'" in message
    for allowed in ("'auto'", "'dlib'", "'insightface'"):
        assert allowed in message


def test_too_small_max_bytes_names_key_and_bound(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "[images]\nmax_bytes = 5\n")
    message = str(info.value)
    assert "images.max_bytes" in message
    assert ">= 1024" in message
    assert "5" in message


def test_out_of_range_value_names_the_range(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "[faces]\ndetect_max_side = 10000\n")
    message = str(info.value)
    assert "faces.detect_max_side" in message
    assert "between 160 and 4096" in message


def test_bad_log_level(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"logging\.level.*'DEBUG'"):
        load(tmp_path, '[logging]\nlevel = "LOUD"\n')


# --------------------------------------------------------------------------- file problems


def test_invalid_toml_names_the_path(tmp_path: Path) -> None:
    path = write(tmp_path, "[faces\nbackend = \n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(path) in str(info.value)
    assert "not valid TOML" in str(info.value)


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "closeup.toml"
    path.write_bytes(b'[faces]\nbackend = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_config(path, environ={})


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "closeup.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(path) in str(info.value)
    assert "does not exist" in str(info.value)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# --------------------------------------------------------------------------- environment overrides


def test_discord_token_from_environment() -> None:
    config = load_config(None, environ={"DISCORD_TOKEN": "abc.def.ghi"})
    assert config.discord.token == "abc.def.ghi"


def test_env_override_string() -> None:
    assert load_config(None, environ={"CLOSEUP_FACES__BACKEND": "dlib"}).faces.backend == "dlib"


def test_env_override_int_is_parsed() -> None:
    config = load_config(None, environ={"CLOSEUP_IMAGES__MAX_BYTES": "1000000"})
    assert config.images.max_bytes == 1_000_000
    assert type(config.images.max_bytes) is int


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("yes", True), ("true", True), ("1", True), ("ON", True), ("no", False), ("false", False), ("0", False)],
)
def test_env_override_bool_is_parsed(raw: str, expected: bool) -> None:
    config = load_config(None, environ={"CLOSEUP_IMAGES__ALLOW_ANIMATION_FIRST_FRAME": raw})
    assert config.images.allow_animation_first_frame is expected


def test_env_bad_bool_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, environ={"CLOSEUP_IMAGES__ALLOW_ANIMATION_FIRST_FRAME": "maybe"})
    message = str(info.value)
    assert "images.allow_animation_first_frame" in message
    assert "true or false" in message
    assert "'maybe'" in message


def test_env_bad_int_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"images\.max_bytes: expected an integer"):
        load_config(None, environ={"CLOSEUP_IMAGES__MAX_BYTES": "lots"})


def test_env_values_still_pass_the_validators() -> None:
    with pytest.raises(ConfigError, match=r"faces\.backend.*'gpu'"):
        load_config(None, environ={"CLOSEUP_FACES__BACKEND": "gpu"})


def test_env_unknown_section_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, environ={"CLOSEUP_FACEZ__BACKEND": "dlib"})
    assert "facez" in str(info.value)


def test_env_unknown_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"faces\.backnd.*did you mean faces\.backend"):
        load_config(None, environ={"CLOSEUP_FACES__BACKND": "dlib"})


def test_env_overrides_beat_the_file(tmp_path: Path) -> None:
    text = '[discord]\ntoken = "from-file"\n[faces]\nbackend = "insightface"\n[images]\nmax_bytes = 2048\n'
    environ = {"DISCORD_TOKEN": "from-env", "CLOSEUP_FACES__BACKEND": "dlib", "CLOSEUP_IMAGES__MAX_BYTES": "4096"}
    config = load(tmp_path, text, environ)
    assert config.discord.token == "from-env"
    assert config.faces.backend == "dlib"
    assert config.images.max_bytes == 4096
    # without the environment the file's values stand
    assert load(tmp_path, text).faces.backend == "insightface"


def test_load_config_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOSEUP_LOGGING__FORMAT", "json")
    assert load_config().logging.format == "json"


# --------------------------------------------------------------------------- redaction


def test_redacted_masks_a_set_token() -> None:
    config = load_config(None, environ={"DISCORD_TOKEN": "very-secret-value"})
    redacted = config.redacted()
    assert redacted["discord"]["token"] == "***"
    assert "very-secret-value" not in repr(redacted)
    assert redacted["faces"]["backend"] == "auto"
    assert set(redacted) == set(sections_of())


def test_redacted_leaves_an_empty_token_visible() -> None:
    assert Config().redacted()["discord"]["token"] == ""


def test_redacted_lists_every_setting() -> None:
    redacted = Config().redacted()
    for name, factory in sections_of().items():
        assert set(redacted[name]) == {f.name for f in dataclasses.fields(factory)}


def test_the_queue_never_keeps_finished_jobs_longer_than_the_store() -> None:
    import dataclasses

    config = Config()
    assert config.queue_retention_s == config.queue.keep_finished_s  # 7 days < 30 days
    short = dataclasses.replace(config, store=dataclasses.replace(config.store, retention_days=2.0))
    assert short.queue_retention_s == 2 * 86400.0


# --------------------------------------------------------------------------- values that need more than a type


@pytest.mark.parametrize(("text", "key", "expected"), [
    ('[generation]\nwidth = 1020\n', "generation.width", "multiple of 8"),
    ('[generation]\nheight = 2056\n', "generation.height", "between 64 and 2048"),
    ('[queue]\nredis_url = "http://127.0.0.1:6379"\n', "queue.redis_url", "redis://"),
    ('[queue]\npath = ""\n', "queue.path", "it is empty"),
    ('[store]\ndata_dir = "  "\n', "store.data_dir", "it is empty"),
])
def test_values_the_type_alone_does_not_catch(tmp_path: Path, text: str, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert key in str(info.value) and expected in str(info.value)


def test_a_secret_redis_url_is_not_echoed_when_its_scheme_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "", {"CLOSEUP_QUEUE__REDIS_URL": "http://user:hunter2@redis:6379"})
    assert "queue.redis_url" in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(("raw", "level"), [("debug", "DEBUG"), ("Warning", "WARNING"), ("INFO", "INFO")])
def test_log_level_is_case_insensitive(tmp_path: Path, raw: str, level: str) -> None:
    assert load(tmp_path, f'[logging]\nlevel = "{raw}"\n').logging.level == level
    assert load(tmp_path, "", {"CLOSEUP_LOGGING__FORMAT": "JSON"}).logging.format == "json"


@pytest.mark.parametrize(("text", "expected"), [
    ('[queue]\nheartbeat_s = 5\ndead_after_s = 8\n', r"dead_after_s \(8\) must be more than twice queue\.heartbeat_s"),
    ('[queue]\njob_timeout_s = 20\ndead_after_s = 30\n', r"job_timeout_s \(20\) must be longer than"),
])
def test_settings_that_contradict_each_other_fail_at_load(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load(tmp_path, text.replace("[queue]\n", '[queue]\nbackend = "redis"\n'))
    load(tmp_path, text)  # the embedded queue has no heartbeats: nothing to contradict


def test_a_closeup_variable_with_one_underscore_is_named_with_the_fix() -> None:
    from generation.config import unused_environment

    found = unused_environment({"CLOSEUP_QUEUE_BACKEND": "redis", "CLOSEUP_FACES__BACKEND": "dlib",
                                "CLOSEUPX": "1", "HOME": "/root"})
    assert len(found) == 1
    assert "CLOSEUP_QUEUE_BACKEND" in found[0] and "did you mean CLOSEUP_QUEUE__BACKEND?" in found[0]
    assert unused_environment({"CLOSEUP_FACES__BACKEND": "dlib"}) == []
