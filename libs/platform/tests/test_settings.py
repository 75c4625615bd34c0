"""Settings: one reading of the environment, every variable in the README's table."""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator, Mapping

import pytest
from accrual_platform import settings
from accrual_platform.settings import ConfigError, Settings

ROOT = pathlib.Path(__file__).resolve().parents[3]


class Recording(Mapping[str, str]):
    """An environment that remembers every variable looked up in it."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("settings look variables up by name, never list the environment")

    def __len__(self) -> int:
        return len(self.values)


def readme_variables() -> set[str]:
    text = (ROOT / "README.md").read_text()
    table = text.split("## Configuration (environment)", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z0-9_]+)`", row)}


def test_the_readme_table_lists_every_variable_the_settings_read() -> None:
    assert readme_variables() == settings.VARIABLES


@pytest.mark.parametrize("embedded", [False, True])
def test_settings_read_exactly_the_listed_variables(tmp_path: pathlib.Path, embedded: bool) -> None:
    env = Recording({"ACCRUAL_VAR_DIR": str(tmp_path / "var"), "DATABASE_URL": "sqlite:///x",
                     "BROKER_URL": "stub://", "INTERNAL_TOKEN": "t"})
    Settings.from_env(embedded=embedded, env=env)
    assert env.asked == settings.VARIABLES


def test_defaults_are_the_dataclass_defaults() -> None:
    read = Settings.read({})
    assert read.grpc_port == 50051 and read.gateway_port == 8080
    assert read.scheduler_interval_seconds == 60 and read.var_dir == pathlib.Path("var")
    assert read.log_format == "json" and not read.webhook_allow_private
    assert Settings.read({}, embedded=True).log_format == "console"


def test_malformed_values_are_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="GRPC_PORT"):
        Settings.read({"GRPC_PORT": "eighty"})
    with pytest.raises(ConfigError, match="SCHEDULER_INTERVAL_SECONDS must be above 0"):
        Settings.read({"SCHEDULER_INTERVAL_SECONDS": "0"})
    with pytest.raises(ConfigError, match="missing environment variables: DATABASE_URL"):
        Settings.from_env(env={"BROKER_URL": "stub://", "INTERNAL_TOKEN": "t"})


def embedded(tmp_path: pathlib.Path, **env: str) -> Settings:
    return Settings.from_env(embedded=True, env={"ACCRUAL_VAR_DIR": str(tmp_path / "var"), **env})


def test_the_embedded_demo_allows_private_and_http_receivers(tmp_path: pathlib.Path) -> None:
    s = embedded(tmp_path)
    assert s.webhook_allow_private and s.webhook_http_allowed


def test_webhook_allow_private_0_is_honoured_in_embedded_mode(tmp_path: pathlib.Path) -> None:
    s = embedded(tmp_path, WEBHOOK_ALLOW_PRIVATE="0")
    assert not s.webhook_allow_private and not s.webhook_http_allowed


def test_http_and_private_addresses_are_separate_switches(tmp_path: pathlib.Path) -> None:
    s = embedded(tmp_path, WEBHOOK_ALLOW_PRIVATE="0", WEBHOOK_ALLOW_HTTP="1")
    assert not s.webhook_allow_private and s.webhook_http_allowed
    s = embedded(tmp_path, WEBHOOK_ALLOW_HTTP="0")
    assert s.webhook_allow_private and not s.webhook_http_allowed
    deployed = Settings.read({"WEBHOOK_ALLOW_HTTP": "1"})
    assert not deployed.webhook_allow_private and deployed.webhook_http_allowed


def test_nothing_but_the_settings_module_reads_the_environment() -> None:
    """Other code gets its configuration passed down; only the test helpers and the
    benchmark keep variables of their own."""
    allowed = {"accrual_platform/settings.py", "accrual_platform/testing.py"}
    readers = []
    for path in [*ROOT.glob("libs/*/src/**/*.py"), *ROOT.glob("services/*/src/**/*.py")]:
        if re.search(r"os\.environ|getenv\(", path.read_text()) and \
                "/".join(path.parts[-2:]) not in allowed:
            readers.append(str(path.relative_to(ROOT)))
    assert readers == []
