"""Several models in one service and hot reload (issue 21): routing by ``model``, byte-identical
answers to single-model servers, reloads that swap atomically, refuse broken checkpoints and
fail no request under load, and GAN_WATCH_S."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gan.checkpoint import load_checkpoint
from service.cli import main as serve_main
from service.settings import Settings, parse_model_specs
from tests.service import imagefiles as F
from tests.service.conftest import ClientFactory, ServerProcess, make_checkpoint


@pytest.fixture(scope="module")
def other_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny checkpoint: other weights (seed), other z_dim, so another model id."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "other", seed=5, z_dim=6, step=7)


def _png(client: httpx.Client | object, **body: object) -> tuple[bytes, str]:
    r = client.post("/generate", json=body)  # type: ignore[attr-defined]
    assert r.status_code == 200, r.text
    return r.content, r.headers["x-model-id"]


def test_model_specs_from_names_and_bare_paths() -> None:
    specs = parse_model_specs(["a=/x/one", "/y/two/", "runs/r1/checkpoints/best"])
    assert [(s.name, str(s.path)) for s in specs] == [
        ("a", "/x/one"),
        ("two", "/y/two"),
        ("r1", "runs/r1/checkpoints/best"),
    ]
    with pytest.raises(ValueError, match="must differ"):
        Settings(checkpoints="a=/x,a=/y")
    with pytest.raises(ValueError, match="model name"):
        Settings(checkpoints="bad name=/x")
    assert Settings(checkpoints="p=/a, q=/b").model_specs()[1].name == "q"


def test_cli_refuses_duplicate_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert serve_main(["--checkpoint", "a=/x", "--checkpoint", "a=/y"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "must differ" in err and "--checkpoints" in err


def test_two_models_route_by_name_and_match_single_servers(
    make_client: ClientFactory, ckpt_dir: Path, other_dir: Path, cond_ckpt_dir: Path
) -> None:
    multi = make_client(checkpoints=f"tiny={ckpt_dir},other={other_dir},cond={cond_ckpt_dir}")
    alone = {
        name: make_client(checkpoint=p) for name, p in [("tiny", ckpt_dir), ("other", other_dir)]
    }
    listed = multi.get("/models").json()
    assert listed["default"] == "tiny"
    assert [(m["name"], m["default"]) for m in listed["models"]] == [
        ("tiny", True),
        ("other", False),
        ("cond", False),
    ]
    assert listed["models"][2]["conditional"] is True
    assert listed["models"][2]["classes"] == ["zero", "one", "two"]
    # No model named: exactly the default, as a single-model server answers.
    assert _png(multi, seed=3) == _png(alone["tiny"], seed=3)
    for name, single in alone.items():
        assert _png(multi, seed=3, model=name) == _png(single, seed=3)
    assert _png(multi, seed=3, model="other")[1] != _png(multi, seed=3)[1]
    # /score and /project take it as a query parameter / form field, /info as a query.
    png = F.GOOD["gray_png"]()
    files = {"files": ("a.png", png, "image/png")}
    for name, single in alone.items():
        got = multi.post(f"/score?model={name}", files=files).json()["results"][0]["logit"]
        assert got == single.post("/score", files=files).json()["results"][0]["logit"]
    proj = multi.post(
        "/project", files={"file": ("a.png", png)}, data={"model": "other", "steps": "2"}
    )
    assert proj.status_code == 200 and len(proj.json()["z"]) == 6
    info = multi.get("/info", params={"model": "other"}).json()
    assert info["model_name"] == "other" and info["z_dim"] == 6
    assert info["models"] == ["tiny", "other", "cond"]
    assert multi.get("/info").json()["model_name"] == "tiny"
    # The body limit of /generate fits the largest z_dim of all models.
    assert multi.post("/generate", json={"z": [[0.0] * 6], "model": "other"}).status_code == 200


def test_unknown_models_are_404_listing_the_valid_ones(
    make_client: ClientFactory, ckpt_dir: Path, other_dir: Path
) -> None:
    multi = make_client(checkpoints=f"tiny={ckpt_dir},other={other_dir}")
    png = F.GOOD["gray_png"]()
    answers = [
        multi.post("/generate", json={"seed": 1, "model": "nope"}),
        multi.post("/score?model=nope", files={"files": ("a.png", png, "image/png")}),
        multi.post("/project", files={"file": ("a.png", png)}, data={"model": "nope"}),
        multi.get("/info?model=nope"),
        multi.post("/models/nope/reload"),
    ]
    for r in answers:
        assert r.status_code == 404, r.text
        assert "'tiny', 'other'" in r.json()["detail"]


def test_metrics_name_every_model(
    make_client: ClientFactory, ckpt_dir: Path, other_dir: Path
) -> None:
    multi = make_client(checkpoints=f"tiny={ckpt_dir},other={other_dir}")
    multi.post("/generate", json={"seed": 1, "model": "other"})
    text = multi.get("/metrics").text
    assert "gan_model_info{checkpoint_hash=" in text
    lines = [line for line in text.splitlines() if line.startswith("gan_model_info{")]
    assert len(lines) == 2
    assert any('model_name="other"' in line and 'default="false"' in line for line in lines)
    assert 'gan_batch_size_count{model="generator",model_name="other"} 1.0' in text


def test_reload_swaps_refuses_broken_checkpoints_and_keeps_serving(
    make_client: ClientFactory, ckpt_dir: Path, other_dir: Path, tmp_path: Path
) -> None:
    served = tmp_path / "served"
    shutil.copytree(ckpt_dir, served)
    client = make_client(checkpoints=f"m={served}")
    first, first_id = _png(client, seed=4)
    same = client.post("/models/m/reload").json()  # nothing new there: kept
    assert same["swapped"] is False and same["new_model_id"] == first_id
    # A broken checkpoint at the path: refused, the old model keeps serving.
    (served / "generator.safetensors").write_bytes(b"not weights")
    bad = client.post("/models/m/reload")
    assert bad.status_code == 422
    assert "generator.safetensors" in bad.json()["detail"] and first_id in bad.json()["detail"]
    assert _png(client, seed=4) == (first, first_id)
    assert "generator.safetensors" in client.get("/models").json()["models"][0]["last_reload_error"]
    # A good new checkpoint: swapped in, reported, and served byte for byte.
    shutil.rmtree(served)
    shutil.copytree(other_dir, served)
    good = client.post("/models/m/reload").json()
    assert good["swapped"] is True and good["old_model_id"] == first_id
    entry = client.get("/models").json()["models"][0]
    assert entry["model_id"] == good["new_model_id"] != first_id and entry["reloads"] == 1
    assert entry["last_reload_error"] is None
    alone = make_client(checkpoint=other_dir)
    assert _png(client, seed=4) == _png(alone, seed=4)
    assert client.get("/info").json()["model"]["model_id"] == good["new_model_id"]
    text = client.get("/metrics").text
    assert 'gan_model_reloads_total{model_name="m",outcome="refused"} 1.0' in text
    assert 'gan_model_reloads_total{model_name="m",outcome="ok"} 2.0' in text


def test_reload_needs_the_api_key(make_client: ClientFactory, ckpt_dir: Path) -> None:
    client = make_client(checkpoints=f"m={ckpt_dir}", api_key="s3cret-key")
    assert client.post("/models/m/reload").status_code == 401
    assert client.get("/models").status_code == 401
    ok = client.post("/models/m/reload", headers={"Authorization": "Bearer s3cret-key"})
    assert ok.status_code == 200


@pytest.mark.slow
def test_reloads_under_load_fail_no_request(
    start_server: Callable[..., ServerProcess],
    make_client: ClientFactory,
    ckpt_dir: Path,
    other_dir: Path,
    tmp_path: Path,
) -> None:
    """Clients send all the time while the model is reloaded good, corrupt, good, ...: no
    request fails, and every answer is exactly one model's image for its seed."""
    served = tmp_path / "served"
    shutil.copytree(ckpt_dir, served)
    second = tmp_path / "second"
    shutil.copytree(other_dir, second)
    server = start_server(
        "--checkpoint", f"m={served}", "--checkpoint", f"b={second}", "--port", "0"
    )
    base = server.wait_started()
    with httpx.Client(base_url=base, timeout=30) as http:
        stop = threading.Event()
        statuses: Counter[int] = Counter()
        answers: list[tuple[str, int, bytes]] = []
        errors: list[BaseException] = []

        def client_loop(k: int) -> None:
            with httpx.Client(base_url=base, timeout=30) as c:
                seed = k * 1000
                while not stop.is_set():
                    try:
                        r = c.post("/generate", json={"seed": seed})
                    except httpx.HTTPError as exc:  # a dropped request counts as a failure
                        errors.append(exc)
                        continue
                    statuses[r.status_code] += 1
                    if r.status_code == 200:
                        answers.append((r.headers["x-model-id"], seed, r.content))
                    seed += 1

        threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        swaps = 0
        try:
            for source in (other_dir, None, ckpt_dir, None, other_dir, ckpt_dir):
                time.sleep(0.3)
                if source is None:  # corrupt in place: refused
                    (served / "discriminator.safetensors").write_bytes(b"\0" * 64)
                    assert http.post("/models/m/reload").status_code == 422
                else:
                    tmp = tmp_path / "incoming"
                    shutil.copytree(source, tmp)
                    shutil.rmtree(served)
                    tmp.rename(served)
                    r = http.post("/models/m/reload")
                    assert r.status_code == 200, r.text
                    swaps += r.json()["swapped"]
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert not errors, errors[:3]
        assert set(statuses) == {200}, statuses
        assert swaps >= 4
        ids = Counter(model_id for model_id, _, _ in answers)
        assert len(ids) == 2, ids  # both models answered, nothing else
        # Every answer is exactly its model's image for its seed (a sample of 40 of them).
        singles = {
            load_checkpoint(p).model_id: make_client(checkpoint=p) for p in (ckpt_dir, other_dir)
        }
        assert set(ids) == set(singles)
        for model_id, seed, content in answers[:: max(1, len(answers) // 40)]:
            assert content == singles[model_id].post("/generate", json={"seed": seed}).content
    assert server.stop() == 0
    assert not any("Traceback" in line for line in server.lines)


@pytest.mark.slow
def test_watch_reloads_a_new_checkpoint_at_the_path(
    make_client: ClientFactory, ckpt_dir: Path, other_dir: Path, tmp_path: Path
) -> None:
    served = tmp_path / "served"
    shutil.copytree(ckpt_dir, served)
    client = make_client(checkpoints=f"m={served}", watch_s=0.1)
    _, first_id = _png(client, seed=1)
    tmp = tmp_path / "incoming"
    shutil.copytree(other_dir, tmp)
    shutil.rmtree(served)
    tmp.rename(served)  # as gan-train --export writes: a complete folder appears at once
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _png(client, seed=1)[1] == first_id:
        time.sleep(0.1)
    new_id = _png(client, seed=1)[1]
    assert new_id != first_id
    # A broken one is refused (and counted), the model keeps serving.
    (served / "generator.safetensors").write_bytes(b"broken")
    deadline = time.monotonic() + 15
    text = ""
    while time.monotonic() < deadline:
        text = client.get("/metrics").text
        if 'gan_model_reloads_total{model_name="m",outcome="refused"} 1.0' in text:
            break
        time.sleep(0.1)
    assert 'outcome="refused"} 1.0' in text
    assert _png(client, seed=1)[1] == new_id


@pytest.mark.slow
def test_a_busy_model_does_not_starve_another(
    start_server: Callable[..., ServerProcess], ckpt_dir: Path, other_dir: Path
) -> None:
    """Heavy gradient requests keep model a's inference thread busy; model b answers plain
    requests all the while (its own thread and queues), within the service's shared limits."""
    server = start_server(
        "--checkpoint", f"a={ckpt_dir}", "--checkpoint", f"b={other_dir}", "--port", "0"
    )
    base = server.wait_started()
    stop = threading.Event()
    heavy_done: list[int] = []

    def heavy() -> None:
        with httpx.Client(base_url=base, timeout=60) as c:
            while not stop.is_set():
                r = c.post(
                    "/generate",
                    json={
                        "seed": 1,
                        "n": 16,
                        "model": "a",
                        "method": "langevin",
                        "method_options": {"steps": 100},
                        "format": "json",
                    },
                )
                heavy_done.append(r.status_code)

    threads = [threading.Thread(target=heavy) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        with httpx.Client(base_url=base, timeout=30) as c:
            latencies = []
            for seed in range(10):
                started = time.perf_counter()
                r = c.post("/generate", json={"seed": seed, "model": "b"})
                latencies.append(time.perf_counter() - started)
                assert r.status_code == 200
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert heavy_done and set(heavy_done) == {200}, Counter(heavy_done)
    assert sorted(latencies)[len(latencies) // 2] < 0.5, latencies
    assert server.stop() == 0
