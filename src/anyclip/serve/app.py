"""The HTTP routes of ``anyclip serve``: a Starlette application over an :class:`~anyclip.serve.engine.Engine`.

====================  ===========================================================================
route                 what
====================  ===========================================================================
POST /v1/embeddings   OpenAI-style embeddings of texts and base64 data-URI images
POST /v1/classify     zero-shot probabilities of images over labels (``anyclip classify``'s prompt)
POST /v1/search       top-k of the index for a text or an image, with thumbnail URLs
GET  /v1/thumbnails/N a JPEG of the index's own image at row N
GET  /health          liveness and what is served;  GET /metrics: Prometheus text
GET  /openapi.json    the OpenAPI schema;  GET /: the web page
====================  ===========================================================================

Example:
    >>> app = create_app(engine, ServeSettings())  # doctest: +SKIP
    >>> TestClient(app).get("/health").json()["status"]  # doctest: +SKIP
    'ok'
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.schemas import SchemaGenerator
from starlette.staticfiles import StaticFiles

from ..transforms.host import ImageLoadError
from .batcher import QueueFullError
from .metrics import CONTENT_TYPE, ServeMetrics
from .middleware import ServiceMiddleware
from .payloads import (
    ApiError,
    decode_data_uri,
    is_data_uri,
    read_json,
    string_list,
    top_k,
)
from .settings import ServeSettings

PAGE = Path(__file__).with_name("page")
SCHEMA = SchemaGenerator({"openapi": "3.0.0", "info": {"title": "anyclip serve", "version": "1"}})


def _error(status: int, message: str, request_id: str, headers: dict | None = None) -> JSONResponse:
    kind = {400: "invalid_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
            413: "too_large", 503: "overloaded", 504: "timeout"}.get(status, "error")
    return JSONResponse({"error": {"message": message, "type": kind}, "request_id": request_id}, status,
                        headers={**(headers or {}), "X-Request-ID": request_id})


async def _none():
    return None


async def _unless_disconnected(request, work, timeout_s: float):
    """``work``'s result; None (and ``work`` cancelled, its queued inputs dropped) when the client disconnects
    first; ``asyncio.TimeoutError`` (``work`` cancelled) after ``timeout_s``."""
    async def disconnected():
        while (await request.receive())["type"] != "http.disconnect":
            pass
    task, watcher = asyncio.ensure_future(work), asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({task, watcher}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if watcher in done:
        return None
    raise asyncio.TimeoutError


class Routes:
    """The endpoints, bound to one engine, its settings and metrics."""

    def __init__(self, engine, settings: ServeSettings, metrics: ServeMetrics):
        self.engine, self.settings, self.metrics = engine, settings, metrics

    async def _answer(self, request, work) -> Response:
        """Read the JSON body, run ``work(body, request)`` within the time limit, map errors to statuses."""
        request_id = request.state.request_id
        try:
            body = await read_json(request, self.settings.max_body_bytes)
            if isinstance(body.get("request_id"), str) and body["request_id"]:
                request_id = request.state.request_id = body["request_id"][:200]
            result = await _unless_disconnected(request, work(body, request), self.settings.request_timeout_s)
            if result is None:  # the client left: nobody reads this answer
                return Response(status_code=499)
        except ApiError as e:
            return _error(e.status, e.message, request_id, e.headers)
        except QueueFullError as e:
            return _error(503, f"{e}; retry after {self.settings.retry_after_s} s", request_id,
                          {"Retry-After": str(self.settings.retry_after_s)})
        except asyncio.TimeoutError:
            return _error(504, f"the request took longer than {self.settings.request_timeout_s:g} s; retry, or "
                               "send fewer inputs", request_id)
        except ImageLoadError as e:
            status = 413 if "exceeds the limit" in str(e) or "decompression-bomb" in str(e) else 400
            return _error(status, f"image {e}", request_id)
        return JSONResponse({**result, "request_id": request_id}, headers={"X-Request-ID": request_id})

    async def _pixels(self, values: list[str], field: str) -> list:
        def decode():
            return [self.engine.pixels(decode_data_uri(v, f"{field}[{i}]")) for i, v in enumerate(values)]
        return await run_in_threadpool(decode)

    async def embeddings(self, request):
        """
        summary: OpenAI-compatible embeddings of texts and images (base64 data URIs); 'model' is not checked
        requestBody: {content: {application/json: {example: {input: ["a red square"], model: anyclip-shapes}}}}
        responses: {200: {description: "object: list, data[].embedding, model, usage"}}
        """
        async def work(body, request):
            inputs = string_list(body, "input", max_items=self.settings.max_inputs)
            images = [i for i, v in enumerate(inputs) if is_data_uri(v)]
            texts = [i for i, v in enumerate(inputs) if not is_data_uri(v)]
            pixels = await self._pixels([inputs[i] for i in images], "input") if images else []
            text_emb, image_emb = await asyncio.gather(
                self.engine.embed_texts([inputs[i] for i in texts]) if texts else _none(),
                self.engine.embed_images(pixels) if images else _none())
            rows = {**dict(zip(texts, text_emb if texts else [])), **dict(zip(images, image_emb if images else []))}
            tokens = int((self.engine.tokens([inputs[i] for i in texts]) != 0).sum()) if texts else 0
            data = [{"object": "embedding", "index": i, "embedding": rows[i].tolist()} for i in range(len(inputs))]
            return {"object": "list", "data": data, "model": self.engine.model_name,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        return await self._answer(request, work)

    async def classify(self, request):
        """
        summary: zero-shot probabilities of images (data URIs) over labels
        requestBody: {content: {application/json: {example: {images: ["data:image/png;base64,..."], labels: [red square, blue circle]}}}}
        responses: {200: {description: "results[i].predictions: labels by probability"}}
        """
        async def work(body, request):
            images = string_list(body, "images" if "images" in body else "image", max_items=self.settings.max_inputs)
            labels = string_list(body, "labels", max_items=1000, allow_single=False)
            templates = string_list(body, "templates", max_items=100) if "templates" in body else ["a photo of a {}."]
            if not all("{}" in t for t in templates):
                raise ApiError(400, "'templates' must each hold {} where the label goes")
            probs = await self.engine.classify(await self._pixels(images, "images"), labels, templates)
            results = [{"index": i, "predictions": sorted(({"label": lab, "prob": float(p)} for lab, p in
                                                           zip(labels, row)), key=lambda x: -x["prob"])}
                       for i, row in enumerate(probs)]
            return {"results": results, "labels": labels, "model": self.engine.model_name}
        return await self._answer(request, work)

    async def search(self, request):
        """
        summary: top-k of the index for a text or an image (data URI)
        requestBody: {content: {application/json: {example: {text: a red square, top_k: 8}}}}
        responses: {200: {description: "results: rank, row, id, score, caption, thumbnail_url"}}
        """
        async def work(body, request):
            if self.engine.index is None:
                raise ApiError(404, "this server has no index; start it with --index DIR (an anyclip index folder)")
            k = top_k(body, 10, self.settings.max_top_k)
            text, image = body.get("text"), body.get("image")
            if (text is None) == (image is None) or not isinstance(text or image, str) or not (text or image):
                raise ApiError(400, "send one query: 'text' (a string) or 'image' (a base64 data URI)")
            if text is not None:
                query = (await self.engine.embed_texts([text]))[0]
            else:
                query = (await self.engine.embed_images(await self._pixels([image], "image")))[0]
            hits = self.engine.search(query, k)
            results = [{"rank": r, "row": h["row"], "id": h.get("id"), "score": h["score"],
                        "caption": h.get("caption") or h.get("text"),
                        "name": Path(h["path"]).name if h.get("path") else None,
                        "thumbnail_url": f"/v1/thumbnails/{h['row']}" if h.get("path") else None}
                       for r, h in enumerate(hits, 1)]
            return {"results": results, "model": self.engine.model_name}
        return await self._answer(request, work)

    async def thumbnail(self, request):
        """
        summary: a JPEG of the index's own image at a row (from a search result's thumbnail_url)
        responses: {200: {description: image/jpeg}, 404: {description: no such row}}
        """
        row = request.path_params["row"]
        try:
            data = await run_in_threadpool(self.engine.thumbnail, row)
        except ImageLoadError as e:
            return _error(404, f"row {row}'s image cannot be read ({e})", request.state.request_id)
        if data is None:
            return _error(404, f"no image at row {row} of the index", request.state.request_id)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def health(self, request):
        """
        summary: liveness, the model and the index size
        responses: {200: {description: "status: ok"}}
        """
        index = self.engine.index
        return JSONResponse({"status": "ok", "model": self.engine.model_name,
                             "index_size": len(index.rows) if index is not None else None,
                             "queue": {"text": self.engine.text.depth, "image": self.engine.image.depth}})

    async def metrics_text(self, request):
        """
        summary: Prometheus metrics (requests, latency, batch sizes, queue depth)
        responses: {200: {description: Prometheus text format}}
        """
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE)

    async def page(self, request):
        return FileResponse(PAGE / "index.html", media_type="text/html")

    async def openapi(self, request):
        return JSONResponse(SCHEMA.get_schema(request.app.routes))


def create_app(engine, settings: ServeSettings | None = None, metrics: ServeMetrics | None = None) -> Starlette:
    """The Starlette application serving ``engine`` (see the module docstring); its lifespan runs the batchers.

    Example:
        >>> app = create_app(engine, ServeSettings(api_key="s3cret"))  # doctest: +SKIP
    """
    settings = settings or ServeSettings()
    metrics = metrics or ServeMetrics()
    engine.report_to(metrics)
    routes = Routes(engine, settings, metrics)
    table = [
        Route("/", routes.page, include_in_schema=False),
        Route("/health", routes.health),
        Route("/metrics", routes.metrics_text),
        Route("/openapi.json", routes.openapi, include_in_schema=False),
        Route("/v1/embeddings", routes.embeddings, methods=["POST"]),
        Route("/v1/classify", routes.classify, methods=["POST"]),
        Route("/v1/search", routes.search, methods=["POST"]),
        Route("/v1/thumbnails/{row:int}", routes.thumbnail),
        Mount("/static", StaticFiles(directory=PAGE), name="static"),
    ]

    async def http_error(request, exc: HTTPException):
        request_id = request.scope.get("state", {}).get("request_id", "")
        return _error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", request_id)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()

    app = Starlette(routes=table, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.state.metrics = metrics
    app.add_middleware(ServiceMiddleware, metrics=metrics, routes=table, api_key=settings.api_key)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID"],
                           expose_headers=["X-Request-ID"])
    return app


__all__ = ["create_app"]
