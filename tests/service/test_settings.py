"""GAN_ settings, CLI option handling, latents and the engine contract (no server)."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from gan.latents import latents_for_seeds
from service import cli
from service.inference import InferenceEngine, sigmoid
from service.settings import Settings, default_checkpoint_dir


def test_defaults() -> None:
    s = Settings()
    assert s.checkpoint == default_checkpoint_dir()
    assert s.checkpoint == Path(__file__).resolve().parents[2] / "checkpoints" / "mnist"
    assert (s.host, s.port, s.workers, s.device) == ("127.0.0.1", 8000, 1, "cpu")
    assert s.api_key is None and s.cors_origins == [] and s.log_level == "info"


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GAN_CHECKPOINT", str(tmp_path))
    monkeypatch.setenv("GAN_PORT", "9123")
    monkeypatch.setenv("GAN_HOST", "0.0.0.0")
    monkeypatch.setenv("GAN_WORKERS", "3")
    monkeypatch.setenv("GAN_TORCH_THREADS", "2")
    monkeypatch.setenv("GAN_MAX_BODY_BYTES", "5000")
    monkeypatch.setenv("GAN_MAX_IMAGES", "7")
    monkeypatch.setenv("GAN_MAX_IMAGE_PIXELS", "1000000")
    monkeypatch.setenv("GAN_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("GAN_API_KEY", "k3y")
    monkeypatch.setenv("GAN_CORS_ORIGINS", "https://a.example, http://b.example:8080/")
    monkeypatch.setenv("GAN_GRACEFUL_SHUTDOWN_S", "5")
    s = Settings()
    assert s.checkpoint == tmp_path and s.port == 9123 and s.host == "0.0.0.0"
    assert (s.workers, s.torch_threads, s.max_body_bytes, s.max_images) == (3, 2, 5000, 7)
    assert s.max_image_pixels == 1_000_000 and s.log_level == "debug"
    assert s.api_key is not None and s.api_key.get_secret_value() == "k3y"
    assert "k3y" not in repr(s)
    assert s.cors_origins == ["https://a.example", "http://b.example:8080"]
    assert s.graceful_shutdown_s == 5
    monkeypatch.setenv("GAN_CORS_ORIGINS", '["https://c.example"]')
    monkeypatch.setenv("GAN_API_KEY", "")
    s = Settings()
    assert s.cors_origins == ["https://c.example"] and s.api_key is None
    monkeypatch.setenv("GAN_MAX_GENERATE_BODY_BYTES", "300000")
    monkeypatch.setenv("GAN_BODY_DEADLINE_S", "12.5")
    monkeypatch.setenv("GAN_BODY_BUFFER_BYTES", str(32 << 20))
    s = Settings()
    assert (s.max_generate_body_bytes, s.body_deadline_s, s.body_buffer_bytes) == (
        300_000,
        12.5,
        32 << 20,
    )
    monkeypatch.setenv("GAN_MAX_GENERATE_BODY_BYTES", "")
    assert Settings().max_generate_body_bytes is None  # empty: sized from the model


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GAN_PORT", "70000"),
        ("GAN_MAX_IMAGES", "0"),
        ("GAN_LOG_LEVEL", "loud"),
        ("GAN_CORS_ORIGINS", "example.org"),
        ("GAN_API_KEY", "has space"),
        ("GAN_MAX_IMAGE_PIXELS", "1000000000"),
        ("GAN_BODY_BUFFER_BYTES", "1048576"),  # below GAN_MAX_BODY_BYTES: no body would fit
        ("GAN_BODY_DEADLINE_S", "0"),
        ("GAN_MAX_GENERATE_BODY_BYTES", "100"),
    ],
)
def test_invalid_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_cli_reports_bad_settings_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--port", "70000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gan-serve: error: invalid settings: --port:") and "\n" not in err
    monkeypatch.setenv("GAN_MAX_IMAGES", "0")
    assert cli.main([]) == 2
    assert "GAN_MAX_IMAGES" in capsys.readouterr().err


def test_cli_help_mentions_the_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--checkpoint", "--host", "--port", "GAN_CHECKPOINT"):
        assert opt in out


def test_cli_workers_checks_the_checkpoint_before_forking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import service.logconfig

    monkeypatch.setattr(service.logconfig, "configure_logging", lambda level: None)
    assert cli.main(["--workers", "2", "--checkpoint", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"gan-serve: error: checkpoint directory {tmp_path / 'none'} does not exist"


def test_sigmoid_is_stable() -> None:
    assert sigmoid(0.0) == 0.5
    assert sigmoid(1000.0) == 1.0 and sigmoid(-1000.0) == 0.0
    assert sigmoid(2.0) == pytest.approx(1 / (1 + math.exp(-2.0)))


def test_engine_contract(ckpt_dir: Path) -> None:
    engine = InferenceEngine.load(ckpt_dir)
    try:
        images = asyncio.run(engine.generate(latents_for_seeds([1, 2], engine.z_dim)))
        assert images.shape == (2, 1, 28, 28) and images.dtype == torch.uint8
        logits = asyncio.run(engine.score(images))
        assert logits.shape == (2,) and logits.dtype == torch.float32
        with pytest.raises(ValueError, match="expected latents"):
            asyncio.run(engine.generate(torch.zeros(2, 3)))
        with pytest.raises(ValueError, match="expected uint8 pixels"):
            asyncio.run(engine.score(images.float()))
    finally:
        engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(engine.generate(latents_for_seeds([1], engine.z_dim)))


def test_docs_table_lists_every_setting_with_its_default() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    rows = {
        line.split("|")[1].strip().strip("`"): line.split("|")[2].strip().strip("`")
        for line in doc.splitlines()
        if line.startswith("| `GAN_")
    }
    defaults = Settings()
    for name in Settings.model_fields:
        env = f"GAN_{name.upper()}"
        assert env in rows, f"{env} missing from docs/api.md"
        value = getattr(defaults, name)
        if isinstance(value, bool):
            assert rows[env] == str(value).lower(), env
        elif isinstance(value, float):
            assert rows[env] == f"{value:g}", env
        elif isinstance(value, (int, str)):
            assert rows[env] == str(value), env
    assert set(rows) == {f"GAN_{n.upper()}" for n in Settings.model_fields}


def test_importing_the_service_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, service.app, service.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
