"""docker-compose.yml: valid for compose v1 and v2, and wired the way docs/deployment.md says.

CI has no Docker engine and may have no compose binary, so the file is checked here with a JSON
schema of the keys that both compose v1 (1.28+) and v2 read, after compose's own variable
interpolation (re-implemented below), plus structural checks against the Dockerfile. Where a
compose binary is installed, ``config -q`` checks the file too. scripts/docker-test.sh runs it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from service.settings import Settings
from tests.deploy.dockerfile import COMPOSE_FILE, ROOT, healthcheck_command, stages

# --------------------------------------------------------------------------------------------
# Compose's variable interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
# ${VAR:?error}, ${VAR?error} (the forms compose v1 knows; v2 knows more).
# --------------------------------------------------------------------------------------------

_VAR = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])(.*))?", re.DOTALL)


class InterpolationError(ValueError):
    pass


def interpolate_str(text: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        if m.group(3):
            return env.get(m.group(3), "")
        braced = _BRACED.fullmatch(m.group(2))
        if braced is None:
            raise InterpolationError(
                f"invalid interpolation ${{{m.group(2)}}} (compose v1 rejects it)"
            )
        name, op, arg = braced.groups()
        value = env.get(name)
        if op is None:
            return value or ""
        unset = value is None or (op.startswith(":") and value == "")
        if op.endswith("-"):
            return arg if unset else str(value)
        if unset:
            raise InterpolationError(f"{name}: {arg}")
        return str(value)

    return _VAR.sub(sub, text)


def interpolate(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate_str(node, env)
    if isinstance(node, list):
        return [interpolate(v, env) for v in node]
    if isinstance(node, dict):
        return {k: interpolate(v, env) for k, v in node.items()}
    return node


def raw() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def resolved(env: dict[str, str] | None = None) -> dict[str, Any]:
    return interpolate(raw(), env or {})  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# The schema: only keys that both compose v1 (1.28+, the compose spec) and v2 accept.
# --------------------------------------------------------------------------------------------

_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(h|m|s|ms|us|ns))+$"}
_STR_LIST = {"type": "array", "items": {"type": "string"}}
_COMMAND = {"oneOf": [{"type": "string"}, _STR_LIST]}
_BUILD = {
    "type": "object",
    "additionalProperties": False,
    "required": ["context"],
    "properties": {
        "context": {"type": "string"},
        "dockerfile": {"type": "string"},
        "args": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
    },
}
_HEALTHCHECK = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "test": _COMMAND,
        "interval": _DURATION,
        "timeout": _DURATION,
        "retries": {"type": "integer", "minimum": 1},
        "start_period": _DURATION,
        "disable": {"type": "boolean"},
    },
}
_PORT = r"^((\d{1,3}\.){3}\d{1,3}:)?\d{1,5}(:\d{1,5})?(/(tcp|udp))?$"
_VOLUME = r"^[^:]+:/[^:]*(:(ro|rw))?$"
_SERVICE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "build": _BUILD,
        "image": {"type": "string", "minLength": 1},
        "init": {"type": "boolean"},
        "restart": {"enum": ["no", "always", "on-failure", "unless-stopped"]},
        "user": {"type": "string", "pattern": r"^[0-9A-Za-z_.-]+(:[0-9A-Za-z_.-]+)?$"},
        "ports": {"type": "array", "items": {"type": "string", "pattern": _PORT}},
        "depends_on": _STR_LIST,
        "environment": {
            "type": "array",
            "items": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*(=.*)?$"},
        },
        "volumes": {"type": "array", "items": {"type": "string", "pattern": _VOLUME}},
        "healthcheck": _HEALTHCHECK,
        "stop_grace_period": _DURATION,
        "profiles": {
            "type": "array",
            "items": {"type": "string", "pattern": r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"},
        },
        "entrypoint": _COMMAND,
        "command": _COMMAND,
        "working_dir": {"type": "string", "pattern": "^/"},
    },
}
COMPOSE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["services"],
    "patternProperties": {"^x-": {}},
    "properties": {
        "services": {
            "type": "object",
            "minProperties": 1,
            "patternProperties": {"^[a-zA-Z0-9._-]+$": _SERVICE},
            "additionalProperties": False,
        },
        "volumes": {
            "type": "object",
            "additionalProperties": {"type": ["object", "null"]},
        },
    },
}


def parse_volume(spec: str) -> tuple[str, str, str]:
    source, target, *mode = spec.split(":")
    return source, target, (mode[0] if mode else "rw")


def is_named_volume(source: str) -> bool:
    return not source.startswith(("/", ".", "~"))


ENV_CASES = [
    pytest.param({}, id="no-variables"),
    pytest.param(
        {
            "GAN_CHECKPOINT_DIR": "./my-models",
            "GAN_DATA_DIR": "/srv/mnist",
            "GAN_PUBLISH_PORT": "9000",
            "GAN_PUBLISH_ADDRESS": "127.0.0.1",
            "GAN_USER": "1000:1000",
            "GAN_WORKERS": "2",
            "GAN_WHEELS": "all",
        },
        id="all-variables",
    ),
]


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate_str("$$HOME ${SET} $SET", env) == "$HOME x x"
    assert interpolate_str("${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d}", env) == "d d  d"
    with pytest.raises(InterpolationError, match="need it"):
        interpolate_str("${UNSET:?need it}", env)
    with pytest.raises(InterpolationError, match="invalid"):
        interpolate_str("${SET:+x}", env)


def test_every_variable_has_a_default_so_plain_up_works() -> None:
    """`docker compose up` must work with no variable set and no .env file."""
    text = COMPOSE_FILE.read_text()
    for m in re.finditer(r"\$\{([^}]*)\}", text):
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*:-.*", m.group(1)), (
            f"${{{m.group(1)}}} in docker-compose.yml needs a default (${{VAR:-default}})"
        )
    assert re.search(r"(?<!\$)\$[A-Za-z_]", text) is None, "write ${VAR:-default}, not $VAR"


@pytest.mark.parametrize("env", ENV_CASES)
def test_compose_file_matches_the_schema_both_compose_versions_read(env: dict[str, str]) -> None:
    jsonschema.validate(resolved(env), COMPOSE_SCHEMA)


def test_api_service() -> None:
    final = stages()[-1]
    image_env = final.key_values("ENV")
    api = resolved()["services"]["api"]
    assert api["build"]["context"] == "."
    assert "profiles" not in api, "the api must start with a plain `docker compose up`"
    assert api["restart"] == "unless-stopped"
    assert api["init"] is True
    assert api["user"] == "10001:10001"
    assert final.of("USER")[-1].value == api["user"], "compose's default user is the image's"
    # The container port is the one the image exposes and binds.
    (published,) = api["ports"]
    assert published == "0.0.0.0:8000:8000"
    assert final.of("EXPOSE")[0].value == "8000" == image_env["GAN_PORT"]
    # Same health check as the image (a compose healthcheck replaces the image's).
    assert api["healthcheck"]["test"] == ["CMD", *healthcheck_command(final)]
    # Give in-flight requests their graceful-shutdown time before docker's SIGKILL.
    grace = int(api["stop_grace_period"].rstrip("s"))
    assert grace > Settings().graceful_shutdown_s


def test_api_serves_the_volume_that_train_writes() -> None:
    final = stages()[-1]
    image_env = final.key_values("ENV")
    doc = resolved()
    api, train = doc["services"]["api"], doc["services"]["train"]
    (api_vol,) = api["volumes"]
    source, target, mode = parse_volume(api_vol)
    assert (source, target, mode) == ("models", "/models", "ro")
    assert source in doc["volumes"], "the default checkpoint store must be a declared named volume"
    # The image serves <store>/current and seeds it with the bundled model.
    assert image_env["GAN_CHECKPOINT"] == f"{target}/current"
    assert any(
        i.value.split()[-1].rstrip("/") == image_env["GAN_CHECKPOINT"]
        and "checkpoints/mnist/" in i.value
        for i in final.of("COPY")
    ), "the image must put the bundled model where GAN_CHECKPOINT points"
    # train: same store, writable, exports into the slot the api serves.
    assert train["profiles"] == ["train"]
    assert train["restart"] == "no"
    assert train["healthcheck"] == {"disable": True}
    mounts = {parse_volume(v)[1]: parse_volume(v) for v in train["volumes"]}
    assert mounts["/models"] == ("models", "/models", "rw")
    assert mounts["/data"][2] == "ro" and mounts["/data"][1] == image_env["GAN_DATA_DIR"]
    entry = train["entrypoint"]
    assert entry[0] == "gan-train"
    assert entry[entry.index("--export") + 1] == image_env["GAN_CHECKPOINT"]
    assert entry[entry.index("--data-dir") + 1] == image_env["GAN_DATA_DIR"]
    assert train["working_dir"] == "/models", "runs land in the store: /models/runs/<time>"
    assert train["image"] == api["image"] and train["build"] == api["build"]


def test_one_variable_points_both_services_at_a_host_folder() -> None:
    services = resolved({"GAN_CHECKPOINT_DIR": "./my-models"})["services"]
    for name in ("api", "train"):
        sources = [parse_volume(v)[0] for v in services[name]["volumes"]]
        assert "./my-models" in sources, name


def test_environment_passes_only_real_settings_and_keeps_image_defaults() -> None:
    final = stages()[-1]
    image_env = final.key_values("ENV")
    api = raw()["services"]["api"]
    fields = {f"GAN_{name.upper()}" for name in Settings.model_fields}
    names = [e.split("=", 1)[0] for e in api["environment"]]
    assert len(names) == len(set(names))
    for entry in api["environment"]:
        name, sep, _ = entry.partition("=")
        assert name in fields, f"{name} is not a gan-serve setting (service/settings.py)"
        if not sep:
            assert name not in image_env, (
                f"{name} is passed through without a default, so compose v1 would remove the "
                "image's value when the host lacks it: give it ${VAR:-default}"
            )
    # The image fixes where the service binds and what it serves; everything else is settable.
    assert fields - set(names) == {"GAN_HOST", "GAN_PORT", "GAN_CHECKPOINT"}
    assert set(image_env) & fields == {"GAN_HOST", "GAN_PORT", "GAN_WORKERS", "GAN_CHECKPOINT"}


def test_build_arguments_match_the_dockerfile() -> None:
    builder = stages()[0]
    args = builder.key_values("ARG")
    build = resolved()["services"]["api"]["build"]
    assert build["args"] == args, "compose's default build arguments must be the Dockerfile's"


def _compose_commands() -> list[list[str]]:
    cmds = []
    if shutil.which("docker-compose"):
        cmds.append(["docker-compose"])
    if (
        shutil.which("docker")
        and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        cmds.append(["docker", "compose"])
    return cmds


@pytest.mark.parametrize("env", ENV_CASES)
def test_compose_binary_accepts_the_file(env: dict[str, str], tmp_path: Path) -> None:
    cmds = _compose_commands()
    if not cmds:
        pytest.skip("no docker-compose / docker compose here; the schema test above stands in")
    for cmd in cmds:
        proc = subprocess.run(
            [
                *cmd,
                "--project-directory",
                str(ROOT),
                "-f",
                str(COMPOSE_FILE),
                "--profile",
                "train",
                "config",
                "-q",
            ],
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), **env},
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, f"{' '.join(cmd)} config: {proc.stderr}"


def test_lb_profile_puts_api_replicas_behind_haproxy() -> None:
    """`--profile lb`: replicas with the api's settings but no port, HAProxy in front checking
    /ready (tests/deploy/test_docker_lb.py runs it for real)."""
    services = resolved()["services"]
    api, replica, lb = services["api"], services["replica"], services["lb"]
    assert replica["profiles"] == ["lb"] and lb["profiles"] == ["lb"]
    assert "ports" not in replica, "replicas are reached through the balancer only"
    assert {k: v for k, v in replica.items() if k != "profiles"} == {
        k: v for k, v in api.items() if k != "ports"
    }
    assert lb["depends_on"] == ["replica"] and lb["build"] == {"context": "deploy/lb"}
    assert [p.split(":")[-1] for p in lb["ports"]] == ["8080"]
    cfg = (ROOT / "deploy" / "lb" / "haproxy.cfg").read_text()
    assert "option httpchk GET /ready" in cfg and "http-check expect status 200" in cfg
    assert "server-template replica 1-10 replica:8000" in cfg
    assert "bind :8080" in cfg
    dockerfile = (ROOT / "deploy" / "lb" / "Dockerfile").read_text()
    base = stages()[-1].base  # the gan-serve image's own base
    assert (
        f"FROM {base}" in dockerfile and "apt-get install" in dockerfile and "haproxy" in dockerfile
    )
