"""GAN_ENGINE=onnxruntime: /generate within one grey level of the torch engine and /score
logits within 1e-3, on the tiny test checkpoints and the bundled one; what needs gradients
still runs on torch (the same bytes); a start without onnxruntime fails with one line."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import ValidationError

from service.app import create_app
from service.inference import StartupError
from service.settings import Settings
from tests.service.conftest import ROOT, ClientFactory, ServerProcess, make_checkpoint

BUNDLED = ROOT / "checkpoints" / "mnist"  # class-conditional, calibrated, with an encoder
NAMES = ("tiny", "tiny-cond", "tiny-rgb", "bundled")
#: A conditional checkpoint's /score class (the bundled one reads it with its encoder).
SCORE_QUERY = {"tiny": "", "tiny-cond": "?label=1", "tiny-rgb": "", "bundled": ""}

Pair = tuple[TestClient, TestClient]  # (torch, onnxruntime)


@pytest.fixture(scope="module")
def onnx_stack() -> None:
    """Skip (with the reason) where the onnx extra is not installed."""
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(
            name,
            reason=f"GAN_ENGINE=onnxruntime needs {name}: pip install -e '.[dev]' "
            "(or gan-serve[onnx])",
        )


@pytest.fixture(scope="module")
def pairs(
    onnx_stack: None, ckpt_dir: Path, cond_ckpt_dir: Path, rgb_ckpt_dir: Path
) -> Iterator[dict[str, Pair]]:
    """A started torch and onnxruntime client per checkpoint, shared by the module."""
    checkpoints = {
        "tiny": ckpt_dir,
        "tiny-cond": cond_ckpt_dir,
        "tiny-rgb": rgb_ckpt_dir,
        "bundled": BUNDLED,
    }
    clients: list[TestClient] = []
    out: dict[str, Pair] = {}
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.upper().startswith("GAN_")]:
            mp.delenv(key)
        for name, ckpt in checkpoints.items():
            started = []
            for engine in ("torch", "onnxruntime"):
                client = TestClient(create_app(Settings(checkpoint=ckpt, engine=engine)))
                client.__enter__()
                clients.append(client)
                started.append(client)
            out[name] = (started[0], started[1])
    yield out
    for client in clients:
        client.__exit__(None, None, None)


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data))).astype(np.int16)


def _images(client: TestClient, body: dict[str, Any]) -> list[bytes]:
    r = client.post("/generate", json={**body, "format": "json"})
    assert r.status_code == 200, r.text
    return [base64.b64decode(im["png_base64"]) for im in r.json()["images"]]


def _grey_levels(a: list[bytes], b: list[bytes]) -> tuple[int, int]:
    """The largest pixel difference and how many pixels differ at all."""
    assert len(a) == len(b)
    diffs = [np.abs(_pixels(x) - _pixels(y)) for x, y in zip(a, b, strict=True)]
    return max(int(d.max()) for d in diffs), sum(int((d > 0).sum()) for d in diffs)


def test_the_engine_runs_onnxruntime_sessions_with_the_torch_threads(
    pairs: dict[str, Pair],
) -> None:
    from gan.onnx_runtime import OnnxDiscriminator, OnnxGenerator

    torch_client, ort_client = pairs["bundled"]
    engine = ort_client.app.state.engine  # type: ignore[attr-defined]
    assert engine.runtime == "onnxruntime"
    assert isinstance(engine._g_forward, OnnxGenerator)
    assert isinstance(engine._d_forward, OnnxDiscriminator)
    for module in (engine._g_forward, engine._d_forward):
        assert module.session.get_session_options().intra_op_num_threads == 1  # GAN_TORCH_THREADS
    # The torch networks stay loaded for gradient work and the encoder.
    assert engine.models().generator is engine.checkpoint.generator
    assert torch_client.app.state.engine.runtime == "torch"  # type: ignore[attr-defined]
    assert ort_client.get("/info").json() == torch_client.get("/info").json()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "body",
    [{"n": 64, "seed": 7}, {"n": 8, "seed": 123, "truncation": 0.7}, {"n": 1, "seed": 5}],
    ids=["n64", "truncated", "n1"],
)
def test_generate_is_within_one_grey_level_of_torch(
    pairs: dict[str, Pair], name: str, body: dict[str, Any]
) -> None:
    torch_client, ort_client = pairs[name]
    worst, count = _grey_levels(_images(torch_client, body), _images(ort_client, body))
    print(f"\n/generate {name} {body}: max |uint8 diff| {worst}, {count} pixels differ")
    assert worst <= 1


@pytest.mark.parametrize("name", NAMES)
def test_score_logits_are_within_1e_3_of_torch(pairs: dict[str, Pair], name: str) -> None:
    torch_client, ort_client = pairs[name]
    files = [
        ("files", (f"{i}.png", png, "image/png"))
        for i, png in enumerate(_images(torch_client, {"n": 16, "seed": 40}))
    ]
    query = SCORE_QUERY[name]
    want = torch_client.post(f"/score{query}", files=files)
    got = ort_client.post(f"/score{query}", files=files)
    assert want.status_code == got.status_code == 200, got.text
    a, b = want.json()["results"], got.json()["results"]
    diff = max(abs(x["logit"] - y["logit"]) for x, y in zip(a, b, strict=True))
    print(f"\n/score {name}: max |logit diff| {diff:.3g}")
    assert diff <= 1e-3
    assert [x.get("label") for x in a] == [y.get("label") for y in b]


def test_interpolation_across_classes_is_within_one_grey_level(pairs: dict[str, Pair]) -> None:
    """Mixed-class rows run on the torch generator, the ends (one class each) in onnxruntime."""
    torch_client, ort_client = pairs["bundled"]
    body = {"interpolate": {"from_seed": 3, "to_seed": 8, "steps": 6}}
    path = _images(ort_client, body)
    assert _grey_levels(_images(torch_client, body), path)[0] <= 1
    assert _grey_levels(path[:1], _images(ort_client, {"seed": 3, "n": 1}))[0] <= 1
    assert _grey_levels(path[-1:], _images(ort_client, {"seed": 8, "n": 1}))[0] <= 1


def test_gradient_methods_and_projection_stay_on_torch(pairs: dict[str, Pair]) -> None:
    torch_client, ort_client = pairs["bundled"]
    body = {"n": 2, "seed": 11, "method": "langevin", "method_options": {"steps": 2}}
    assert _images(torch_client, body) == _images(ort_client, body)  # byte for byte
    png = _images(torch_client, {"n": 1, "seed": 2})[0]
    projected = [
        c.post(
            "/project",
            files={"file": ("d.png", png, "image/png")},
            data={"steps": "3", "restarts": "1", "label": "2"},
        )
        for c in (torch_client, ort_client)
    ]
    assert [r.status_code for r in projected] == [200, 200], projected[1].text
    assert projected[0].json()["z"] == projected[1].json()["z"]
    assert projected[0].json()["image"] == projected[1].json()["image"]


@pytest.mark.parametrize("method", ["drs", "mh"])
def test_forward_only_methods_run_their_passes_on_the_sessions(
    pairs: dict[str, Pair], method: str
) -> None:
    _, ort_client = pairs["bundled"]
    r = ort_client.post("/generate", json={"n": 4, "seed": 1, "method": method, "format": "json"})
    assert r.status_code == 200, r.text
    assert len(r.json()["images"]) == 4


def test_an_ebm_scores_in_onnxruntime_and_samples_on_torch(
    onnx_stack: None, make_client: ClientFactory, tmp_path: Path
) -> None:
    from gan.samplers import EBMSearch

    ckpt = make_checkpoint(
        tmp_path / "ebm", kind="ebm", ebm=EBMSearch(steps=3, step_size=10.0, grad_clip=0.01)
    )
    torch_client = make_client(checkpoint=ckpt)
    ort_client = make_client(checkpoint=ckpt, engine="onnxruntime")
    assert ort_client.app.state.engine.runtime == "onnxruntime"  # type: ignore[attr-defined]
    images = _images(torch_client, {"n": 3, "seed": 4})
    assert images == _images(ort_client, {"n": 3, "seed": 4})  # the search runs on torch's D
    files = [("files", (f"{i}.png", png, "image/png")) for i, png in enumerate(images)]
    a = torch_client.post("/score", files=files).json()["results"]
    b = ort_client.post("/score", files=files).json()["results"]
    assert max(abs(x["logit"] - y["logit"]) for x, y in zip(a, b, strict=True)) <= 1e-3


@pytest.mark.parametrize("failure", ["parity", "session"])
def test_a_graph_onnxruntime_cannot_run_or_that_disagrees_stops_the_start(
    onnx_stack: None, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    import gan.onnx_runtime

    if failure == "parity":
        monkeypatch.setattr(gan.onnx_runtime, "max_abs_difference", lambda *a, **k: 0.5)
        phrase = "differs from torch by 0.5 (more than 0.001) on 8 rows"
    else:

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : no kernel\nsecond line")

        monkeypatch.setattr(gan.onnx_runtime, "make_session", broken)
        phrase = "onnxruntime cannot run the exported graphs: [ONNXRuntimeError] : 1 : FAIL"
    with pytest.raises(StartupError) as info:
        make_client(engine="onnxruntime")
    message = str(info.value)
    assert phrase in message and "\n" not in message, message


# --------------------------------------------------------------------------------------------
# The setting and a start without onnxruntime (these run without the onnx extra)
# --------------------------------------------------------------------------------------------


def test_setting_reads_gan_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().engine == "torch"
    monkeypatch.setenv("GAN_ENGINE", "onnxruntime")
    assert Settings().engine == "onnxruntime"
    monkeypatch.setenv("GAN_ENGINE", "tensorrt")
    with pytest.raises(ValidationError, match="torch"):
        Settings()


def test_start_without_onnxruntime_fails_with_one_line(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # import: ImportError
    with pytest.raises(StartupError) as info:
        make_client(engine="onnxruntime")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("GAN_ENGINE=onnxruntime: ")
    assert "onnxruntime" in message and "pip install gan-serve[onnx]" in message


def test_gan_serve_without_onnxruntime_exits_with_one_error_line(
    ckpt_dir: Path, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    fake = tmp_path / "site" / "onnxruntime"  # an onnxruntime that cannot be imported
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('onnxruntime is not installed here')\n")
    path = os.pathsep.join([str(tmp_path / "site"), str(ROOT)])
    server = start_server(
        "--checkpoint",
        str(ckpt_dir),
        "--port",
        "0",
        env={"GAN_ENGINE": "onnxruntime", "PYTHONPATH": path},
    )
    assert server.wait() == 1
    last = server.lines[-1]
    assert last.startswith("gan-serve: error: GAN_ENGINE=onnxruntime: "), server.lines
    assert "pip install gan-serve[onnx]" in last
