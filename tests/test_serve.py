"""anyclip serve's API through Starlette's TestClient, on the bundled default model and its default index.

Numbers are checked against anyclip's own batch encoders and `anyclip classify` (the reference the service
must agree with); limits, errors, request ids, the API key and dynamic batching through the routes.
"""

import asyncio
import base64
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="anyclip serve needs the [serve] extra (starlette)")
from PIL import Image  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from anyclip.cli import build_parser, main  # noqa: E402
from anyclip.serve.app import create_app  # noqa: E402
from anyclip.serve.command import build_engine  # noqa: E402
from anyclip.serve.settings import ServeSettings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RED_SQUARE = ROOT / "examples" / "shapes" / "red-square.png"
LABELS = ["red square", "blue circle", "yellow star", "red triangle"]


def data_uri(path_or_bytes, kind="png") -> str:
    data = Path(path_or_bytes).read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    return f"data:image/{kind};base64," + base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    import os
    os.environ["ANYCLIP_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        engine = build_engine(build_parser().parse_args(["serve", "--max-batch-size", "8", "--max-wait-ms", "2"]))
    finally:
        del os.environ["ANYCLIP_CACHE"]
    yield engine
    engine.close()


@pytest.fixture
def client(engine):
    with TestClient(create_app(engine)) as client:
        yield client


def metric_samples(text: str, name: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples if s.name.startswith(name)}


def test_embeddings_of_texts_and_images_equal_the_batch_encoders(client, engine):
    from anyclip.encode import encode_images, encode_texts
    body = {"input": ["a red square", data_uri(RED_SQUARE), "two blue circles"], "model": "anyclip-shapes"}
    response = client.post("/v1/embeddings", json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["object"] == "list" and out["model"] == "anyclip-shapes"
    assert [d["index"] for d in out["data"]] == [0, 1, 2] and {d["object"] for d in out["data"]} == {"embedding"}
    texts = encode_texts(engine.model, engine.tokenizer, ["a red square", "two blue circles"], batch_size=2)
    image = encode_images(engine.model, [RED_SQUARE], workers=0).features
    got = np.array([d["embedding"] for d in out["data"]], np.float32)
    np.testing.assert_allclose(got[[0, 2]], texts, atol=2e-5)
    np.testing.assert_allclose(got[1], image[0], atol=2e-5)
    tokens = int((np.asarray(engine.tokenizer(["a red square", "two blue circles"])) != 0).sum())
    assert out["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    single = client.post("/v1/embeddings", json={"input": "a red square"}).json()
    np.testing.assert_allclose(single["data"][0]["embedding"], texts[0], atol=2e-5)


def test_classify_probabilities_equal_anyclip_classify(client, capsys):
    images = [RED_SQUARE, ROOT / "examples" / "shapes" / "yellow-star.png"]
    response = client.post("/v1/classify", json={"images": [data_uri(p) for p in images], "labels": LABELS})
    assert response.status_code == 200, response.text
    assert main(["classify", *map(str, images), "--labels", *LABELS, "--top-k", "4", "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)["results"]
    for got, want in zip(response.json()["results"], expected):
        assert [p["label"] for p in got["predictions"]] == [p["label"] for p in want["predictions"]]
        np.testing.assert_allclose([p["prob"] for p in got["predictions"]], [p["prob"] for p in want["predictions"]],
                                   atol=1e-5)
    assert response.json()["results"][0]["predictions"][0]["label"] == "red square"


def test_search_by_text_and_by_image_with_thumbnails(client, engine):
    hits = client.post("/v1/search", json={"text": "a yellow star", "top_k": 5}).json()["results"]
    assert len(hits) == 5 and [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert "yellow star" in hits[0]["caption"]
    assert hits == sorted(hits, key=lambda h: -h["score"])
    row = engine.index.rows[hits[2]["row"]]
    query = client.post("/v1/embeddings", json={"input": "a yellow star"}).json()["data"][0]["embedding"]
    image = client.post("/v1/embeddings", json={"input": data_uri(Path(row["path"]))}).json()["data"][0]["embedding"]
    assert hits[2]["score"] == pytest.approx(float(np.dot(query, image)), abs=1e-4)
    # an index image, re-encoded as JPEG and cropped by a pixel: its own row comes first
    buffer = io.BytesIO()
    Image.open(row["path"]).convert("RGB").crop((1, 1, 63, 63)).save(buffer, "JPEG", quality=90)
    same = client.post("/v1/search", json={"image": data_uri(buffer.getvalue(), "jpeg"), "top_k": 3}).json()
    assert same["results"][0]["row"] == hits[2]["row"] and same["results"][0]["score"] > 0.9
    thumb = client.get(hits[0]["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).format == "JPEG"
    assert client.get("/v1/thumbnails/100000").status_code == 404
    assert client.get("/v1/thumbnails/..%2F..%2Fetc%2Fpasswd").status_code == 404


@pytest.mark.parametrize("route,body,status,words", [
    ("/v1/embeddings", {"input": "data:image/png;base64,@@@"}, 400, "input[0]"),
    ("/v1/embeddings", {"input": "data:image/png;base64," + base64.b64encode(b"not an image").decode()}, 400,
     "not an image"),
    ("/v1/embeddings", {"input": []}, 400, "'input'"),
    ("/v1/embeddings", {"input": ["x"] * 65}, 413, "at most 64"),
    ("/v1/classify", {"images": ["/etc/passwd"], "labels": ["a"]}, 400, "images[0]"),
    ("/v1/classify", {"images": [data_uri(RED_SQUARE)], "labels": []}, 400, "'labels'"),
    ("/v1/search", {"text": "a", "image": data_uri(RED_SQUARE)}, 400, "one query"),
    ("/v1/search", {"text": "a", "top_k": 0}, 400, "top_k"),
])
def test_bad_requests_get_one_line_naming_the_field(client, route, body, status, words):
    response = client.post(route, json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]


def test_body_limit_bombs_unknown_routes_and_methods(engine):
    with TestClient(create_app(engine, ServeSettings(max_body_bytes=2000))) as client:
        big = client.post("/v1/embeddings", json={"input": "a" * 3000})
        assert big.status_code == 413 and "limit of 2000" in big.json()["error"]["message"]
        not_json = client.post("/v1/search", content=b"{", headers={"content-type": "application/json"})
        assert not_json.status_code == 400
        assert client.get("/v2/nothing").status_code == 404
        assert client.get("/v1/search").status_code == 405
    buffer = io.BytesIO()
    Image.new("L", (400, 400)).save(buffer, "PNG")
    limit, engine.max_pixels = engine.max_pixels, 10_000
    try:
        with TestClient(create_app(engine)) as client:
            bomb = client.post("/v1/embeddings", json={"input": data_uri(buffer.getvalue())})
    finally:
        engine.max_pixels = limit
    assert bomb.status_code == 413 and "decompression bomb" in bomb.json()["error"]["message"]


def test_request_id_is_echoed_from_header_or_field_else_made(client):
    r = client.post("/v1/search", json={"text": "a red circle"}, headers={"X-Request-ID": "req-42"})
    assert r.headers["x-request-id"] == "req-42" and r.json()["request_id"] == "req-42"
    r = client.post("/v1/search", json={"text": "a red circle", "request_id": "field-7"})
    assert r.headers["x-request-id"] == "field-7" and r.json()["request_id"] == "field-7"
    r = client.post("/v1/search", json={"text": "a"}, headers={"X-Request-ID": "bad-1"})
    assert r.headers["x-request-id"] == "bad-1"
    made = client.get("/health").headers["x-request-id"]
    assert len(made) == 32 and made != client.get("/health").headers["x-request-id"]


def test_api_key_is_required_on_the_api_only(engine):
    with TestClient(create_app(engine, ServeSettings(api_key="s3cret"))) as client:
        body = {"text": "a red square"}
        assert client.post("/v1/search", json=body).status_code == 401
        wrong = client.post("/v1/search", json=body, headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 401 and "wrong API key" in wrong.json()["error"]["message"]
        assert client.get("/metrics").status_code == 401
        assert client.post("/v1/search", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.post("/v1/search", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/health").status_code == 200 and client.get("/").status_code == 200


def test_cors_is_off_unless_an_origin_is_allowed(engine):
    origin = {"Origin": "http://example.test"}
    with TestClient(create_app(engine)) as client:
        assert "access-control-allow-origin" not in client.get("/health", headers=origin).headers
    with TestClient(create_app(engine, ServeSettings(cors_origins=("http://example.test",)))) as client:
        assert client.get("/health", headers=origin).headers["access-control-allow-origin"] == "http://example.test"


async def _concurrently(engine, settings, bodies, slow_s=0.0):
    """POST ``bodies`` to /v1/search at once (httpx over ASGI), the text encoder slowed by ``slow_s``."""
    import httpx
    app = create_app(engine, settings)
    encode = engine.text.encode
    if slow_s:
        engine.text.encode = lambda batch: (time.sleep(slow_s), encode(batch))[1]
    await engine.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = await asyncio.gather(*(client.post("/v1/search", json=b) for b in bodies))
            metrics = (await client.get("/metrics")).text
    finally:
        await engine.stop()
        engine.text.encode = encode
    return responses, metrics


def test_concurrent_requests_are_packed_into_batches(engine):
    wait, engine.text.max_wait_s = engine.text.max_wait_s, 0.2
    try:
        bodies = [{"text": f"a red shape number {i}", "request_id": f"r{i}"} for i in range(8)]
        responses, metrics = asyncio.run(_concurrently(engine, ServeSettings(), bodies))
    finally:
        engine.text.max_wait_s = wait
    assert [r.status_code for r in responses] == [200] * 8
    assert [r.json()["request_id"] for r in responses] == [f"r{i}" for i in range(8)]
    samples = metric_samples(metrics, "anyclip_batch_size")
    count = samples[("anyclip_batch_size_count", (("encoder", "text"),))]
    assert samples[("anyclip_batch_size_sum", (("encoder", "text"),))] == 8
    assert count < 8  # fewer model calls than requests
    assert samples[("anyclip_batch_size_bucket", (("encoder", "text"), ("le", "1.0")))] < count or count == 1
    requests = metric_samples(metrics, "anyclip_requests_total")
    assert requests[("anyclip_requests_total", (("route", "/v1/search"), ("status", "200")))] == 8
    assert ("anyclip_queue_depth", (("encoder", "text"),)) in metric_samples(metrics, "anyclip_queue_depth")


def test_a_full_queue_answers_503_with_retry_after_and_slow_requests_504(engine):
    queue, engine.text.max_queue = engine.text.max_queue, 1
    try:
        bodies = [{"text": f"query {i}"} for i in range(6)]
        responses, _ = asyncio.run(_concurrently(engine, ServeSettings(retry_after_s=3), bodies, slow_s=0.3))
    finally:
        engine.text.max_queue = queue
    codes = [r.status_code for r in responses]
    assert 200 in codes and 503 in codes, codes
    full = next(r for r in responses if r.status_code == 503)
    assert full.headers["retry-after"] == "3" and "queue is full" in full.json()["error"]["message"]
    responses, _ = asyncio.run(_concurrently(engine, ServeSettings(request_timeout_s=0.1), [{"text": "x"}], 0.5))
    assert responses[0].status_code == 504 and "longer than 0.1 s" in responses[0].json()["error"]["message"]


def test_requests_of_clients_that_disconnect_are_dropped_before_encoding(engine):
    """One request keeps the model busy; another's client leaves while it waits: it is never encoded."""
    import httpx
    batches = []

    async def gone_client(app):
        body = [{"type": "http.request", "body": json.dumps({"text": "nobody waits"}).encode(), "more_body": False}]

        async def receive():
            if body:
                return body.pop(0)
            await asyncio.sleep(0.3)  # queued behind the busy batch by now
            return {"type": "http.disconnect"}
        sent = []

        async def send(message):
            sent.append(message)
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/search", "raw_path": b"/v1/search", "query_string": b"",
                 "root_path": "", "headers": [(b"content-type", b"application/json"), (b"host", b"test")],
                 "client": ("127.0.0.1", 1), "server": ("test", 80)}
        await app(scope, receive, send)
        return sent

    async def scenario():
        app = create_app(engine)
        encode = engine.text.encode
        engine.text.encode = lambda batch: (batches.append(len(batch)), time.sleep(1.0), encode(batch))[2]
        await engine.start()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
                busy = asyncio.ensure_future(client.post("/v1/search", json={"text": "busy"}))
                while not batches:  # the busy batch is running
                    await asyncio.sleep(0.01)
                sent = await gone_client(app)
                status = (await busy).status_code
                await asyncio.sleep(0.1)  # the worker's next round finds the abandoned input
                return status, sent, (await client.get("/metrics")).text
        finally:
            await engine.stop()
            engine.text.encode = encode
    status, sent, metrics = asyncio.run(scenario())
    assert status == 200 and sent[0]["status"] == 499
    assert batches == [1]  # the busy request's batch only
    assert metric_samples(metrics, "anyclip_dropped")[("anyclip_dropped_total", (("encoder", "text"),))] == 1


def test_openapi_health_metrics_and_page(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/embeddings", "/v1/classify", "/v1/search", "/v1/thumbnails/{row}", "/health", "/metrics"} <= set(paths)
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == "anyclip-shapes" and health["index_size"] == 96
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "anyclip_request_seconds_bucket" in metrics.text
    page = client.get("/")
    assert page.status_code == 200 and 'id="query"' in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        text = client.get(asset).text
        assert "http://" not in text and "https://" not in text  # no CDN: everything is served from the package
    assert "http" not in page.text.replace('name="viewport"', "")


def test_cli_says_what_to_install_and_refuses_bad_options(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if anyclip[serve] were not installed
    assert main(["serve"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "anyclip serve: error: this needs uvicorn: pip install 'anyclip[serve]'"
    assert main(["serve", "--port", "70000"]) == 2 and "--port" in capsys.readouterr().err
    assert main(["serve", "--max-batch-size", "0"]) == 2 and "--max-batch-size" in capsys.readouterr().err
