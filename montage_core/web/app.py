"""The Starlette app behind ``montage serve``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse,
                                 Response, StreamingResponse)
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from ..errors import MontageError
from ..jobstore import JobStore
from ..models import Timeline
from ..job import DEFAULT_FPS, DEFAULT_HEIGHT, DEFAULT_WIDTH, Job, JobOptions
from ..plugins import MontageManager, get_manager
from . import media
from .guard import CrossSiteError, GuardMiddleware, allowed_hosts, check_csrf
from .runner import JobRunner

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
UPLOAD_LIMIT = 2 << 30  # 2 GiB
DOWNLOADS = {"video": "video", "otio": "otio", "edl": "edl", "timeline": "timeline"}


def _job_view(store: JobStore, job: dict[str, Any]) -> dict[str, Any]:
    result = json.loads(job["result"]) if job.get("result") else {}
    params = json.loads(job["params"]) if job.get("params") else {}
    stages = store.stage_progress(job["id"])
    done = sum(s["done"] + s["failed"] for s in stages.values())
    total = sum(s["total"] for s in stages.values())
    return {**job, "result": result, "params": params, "stages": stages,
            "progress": 1.0 if job["state"] == "done" else (done / total if total else 0.0),
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job["created"])),
            "finished_at": time.strftime("%H:%M:%S", time.localtime(job["finished"])) if job.get("finished") else ""}


def form_options(form: Any, media_root: Path) -> JobOptions:
    """The new-job form as the options ``montage run`` would get; a value that does not parse is a
    :class:`MontageError` naming the field (the rest is checked by :meth:`Job.prepare`)."""
    clips = [str(media.confine(media_root, c)) for c in form.getlist("clips")]
    if not clips:
        raise MontageError("choose at least one clip")
    if not form.get("music"):
        raise MontageError("choose the music")
    music = str(media.confine(media_root, str(form.get("music", ""))))

    def number(field: str, kind: type, default: Any) -> Any:
        raw = str(form.get(field) or "").strip()
        try:
            return kind(raw) if raw else default
        except ValueError:
            raise MontageError(f"{field} {raw!r} is not a number") from None

    resolution = str(form.get("resolution") or f"{DEFAULT_WIDTH}x{DEFAULT_HEIGHT}")
    try:
        width, height = (int(v) for v in resolution.lower().split("x"))
    except ValueError:
        raise MontageError(f"resolution {resolution!r} is not WIDTHxHEIGHT (e.g. 1920x1080)") from None
    params = {}
    for item in filter(None, (p.strip() for p in str(form.get("params") or "").replace("\n", ",").split(","))):
        name, equals, value = item.partition("=")
        if not equals:
            raise MontageError(f"style parameter {item!r} is not NAME=VALUE")
        params[name.strip()] = value.strip()
    return JobOptions(
        clips=clips, music=music, output=str(media_root / "montages" / "montage.mp4"),
        style=str(form.get("style") or "dynamic"), style_params=params, backend=str(form.get("backend") or "local"),
        accel=str(form.get("accel") or "auto"), quality=str(form.get("quality") or "standard"), width=width,
        height=height, fps=number("fps", float, DEFAULT_FPS), seed=number("seed", int, 0),
        duration=number("duration", float, None), loudness=str(form.get("loudness") or "-14"),
        reframe=str(form.get("reframe") or "auto"))


class WebUI:
    """The web UI's pages and API for one job store, media root and plugin manager (each route a method)."""

    def __init__(self, media_root: Path, store: JobStore, manager: MontageManager):
        self.media_root = media_root
        self.outputs = media_root / "montages"  # each job's video goes in a folder of its own here
        self.outputs.mkdir(parents=True, exist_ok=True)
        self.store, self.manager = store, manager
        self.runner = JobRunner(store)

    def job_or_404(self, job_id: str) -> dict[str, Any]:
        job = self.store.job(job_id)
        if job is None:
            raise MontageError(f"no job {job_id!r}")
        return job

    async def jobs_page(self, request: Request) -> Response:
        self.runner.reap()
        jobs = [_job_view(self.store, j) for j in self.store.jobs(200)]
        return TEMPLATES.TemplateResponse(request, "jobs.html", {"jobs": jobs})

    async def job_page(self, request: Request) -> Response:
        job = _job_view(self.store, self.job_or_404(request.path_params["job_id"]))
        return TEMPLATES.TemplateResponse(request, "job.html", {"job": job})

    def snapshot(self, job_id: str) -> dict[str, Any]:
        self.runner.reap()
        job = _job_view(self.store, self.job_or_404(job_id))
        now = time.time()
        live = job["state"] in ("queued", "running")
        workers = [{**w, "elapsed": round((now if live and w.get("state") in ("started", "running") else w["updated"])
                                          - (w.get("started") or w["updated"]), 1)} for w in self.store.workers(job_id)]
        failed = [{"clip": s["clip"], "stage": s["stage"], "error": s["error"]}
                  for s in self.store.shards(job_id) if s["state"] == "failed"]
        return {"state": job["state"], "error": job.get("error") or "", "stages": job["stages"],
                "progress": job["progress"], "workers": workers, "failed": failed, "result": job["result"]}

    async def events(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        self.job_or_404(job_id)

        async def stream() -> Any:
            last: dict[str, Any] = {}
            while True:
                state = self.snapshot(job_id)
                payloads = {"progress": {k: state[k] for k in ("state", "stages", "progress", "error")},
                            "workers": state["workers"], "failed": state["failed"]}
                for name, payload in payloads.items():  # only what changed since the last tick
                    if last.get(name) != payload:
                        yield f"event: {name}\ndata: {json.dumps(payload)}\n\n"
                last = payloads
                if state["state"] in ("done", "failed", "cancelled"):
                    yield f"event: finished\ndata: {json.dumps({'state': state['state'], 'result': state['result']})}\n\n"
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.4)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def result_timeline(self, job: dict[str, Any]) -> Timeline | None:
        result = json.loads(job["result"]) if job.get("result") else {}
        return Timeline.load(result["timeline"]) if result.get("timeline") else None

    async def timeline(self, request: Request) -> Response:
        job = self.job_or_404(request.path_params["job_id"])
        tl = self.result_timeline(job)
        if tl is None:
            return JSONResponse({"ready": False})
        wave = await asyncio.to_thread(media.waveform, tl.music, tl.duration)
        return JSONResponse({"ready": True, "duration": tl.duration, "beats": tl.beats, "waveform": wave,
                             "cuts": [{"index": c.index, "start": c.start, "end": c.end, "phase": c.phase,
                                       "source": Path(c.source).name, "transition": c.transition.kind}
                                      for c in tl.cuts]})

    async def thumb(self, request: Request) -> Response:
        job = self.job_or_404(request.path_params["job_id"])
        tl = self.result_timeline(job)
        index = request.path_params["index"]
        if tl is None or not 0 <= index < len(tl.cuts):
            return PlainTextResponse("no such cut", status_code=404)
        cut = tl.cuts[index]
        video = json.loads(job["result"])["video"]
        if not Path(video).resolve().is_relative_to(self.outputs.resolve()):  # a picture of it is its content
            return PlainTextResponse("this job's files were not made through the web UI", status_code=403)
        data = await asyncio.to_thread(media.thumbnail, video, (cut.start + cut.end) / 2)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def download(self, request: Request) -> Response:
        job = self.job_or_404(request.path_params["job_id"])
        kind = request.path_params["kind"]
        result = json.loads(job["result"]) if job.get("result") else {}
        if kind not in DOWNLOADS or not result.get(DOWNLOADS[kind]):
            return PlainTextResponse(f"nothing to download as {kind!r} (known: {', '.join(DOWNLOADS)})", 404)
        path = Path(result[DOWNLOADS[kind]])
        if not path.resolve().is_relative_to(self.outputs.resolve()):  # a CLI job's files are not the web's to serve
            return PlainTextResponse("this job's files were not made through the web UI", status_code=403)
        inline = bool(request.query_params.get("play"))  # the page's own player, not a download
        return FileResponse(path, filename=path.name, content_disposition_type="inline" if inline else "attachment")

    async def log(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        self.job_or_404(job_id)
        sections = [self.runner.tail(job_id)]
        for pod in await asyncio.to_thread(self.store.worker_logs, job_id):  # cluster pods, kept after they are gone
            head = f"── {pod['source']} ({pod['stage']}, node {pod['node'] or '?'})"
            sections.append(head + (f": {pod['diagnosis']}" if pod["diagnosis"] else "") + "\n" + pod["log"].rstrip())
        return PlainTextResponse("\n\n".join(s for s in sections if s))

    async def cancel(self, request: Request) -> Response:
        check_csrf(request, await request.form())
        self.job_or_404(request.path_params["job_id"])
        self.runner.cancel(request.path_params["job_id"])
        return RedirectResponse(f"/jobs/{request.path_params['job_id']}", status_code=303)

    async def retry(self, request: Request) -> Response:
        check_csrf(request, await request.form())
        self.job_or_404(request.path_params["job_id"])
        self.runner.retry(request.path_params["job_id"])
        return RedirectResponse(f"/jobs/{request.path_params['job_id']}", status_code=303)

    async def new_job_page(self, request: Request) -> Response:
        from ..accel import probe_all

        probes = await asyncio.to_thread(probe_all, list(self.manager.accelerators))
        styles = [{"name": s.name, "description": s.description} for s in sorted(self.manager.styles, key=lambda s: s.name)]
        backends = [{"name": b.name, "description": b.description, "reason": b.availability() or ""}
                    for b in self.manager.backends]
        accels = [{"name": p.name, "available": p.available, "reason": p.reason} for p in probes.values()]
        return TEMPLATES.TemplateResponse(request, "new.html", {
            "files": media.listing(self.media_root), "styles": styles, "backends": backends, "accels": accels,
            "root": str(self.media_root)})

    async def create_job(self, request: Request) -> Response:
        form = await request.form()
        check_csrf(request, form)
        options = form_options(form, self.media_root)
        # The same checks as `montage run`, every problem at once, before the job exists
        await asyncio.to_thread(Job.prepare, options, self.manager)
        job_id = self.runner.start(options, self.outputs)
        return RedirectResponse(f"/jobs/{job_id}", status_code=303)

    async def upload(self, request: Request) -> Response:
        check_csrf(request)  # the page's script sends it as X-CSRF-Token
        length = int(request.headers.get("content-length") or 0)
        if length > UPLOAD_LIMIT + (1 << 20):
            raise MontageError(f"upload is larger than the limit of {UPLOAD_LIMIT >> 20} MiB")
        form = await request.form(max_part_size=UPLOAD_LIMIT)
        saved = [str((await media.save_upload(self.media_root, f, UPLOAD_LIMIT)).relative_to(self.media_root))
                 for f in form.getlist("files")]
        return JSONResponse({"saved": saved})

    async def api_media(self, request: Request) -> Response:
        return JSONResponse(media.listing(self.media_root))

    async def api_file(self, request: Request) -> Response:
        path = media.confine(self.media_root, request.query_params.get("path", ""))
        if not path.is_file() or not media.is_media(path):
            return PlainTextResponse("no such file", status_code=404)
        return FileResponse(path)

    async def montage_error(self, request: Request, exc: Exception) -> Response:
        status = 403 if isinstance(exc, CrossSiteError) or "outside the media root" in str(exc) else 400
        if "no job" in str(exc):
            status = 404
        if request.headers.get("accept", "").startswith("application/json"):
            return JSONResponse({"error": str(exc)}, status_code=status)
        return TEMPLATES.TemplateResponse(request, "error.html", {"message": str(exc)}, status_code=status)


def create_app(media_root: Path, *, token: str | None = None, store: JobStore | None = None,
               manager: MontageManager | None = None, host: str = "127.0.0.1",
               extra_hosts: tuple[str, ...] = ()) -> Starlette:
    """The web UI for jobs in ``store``, with new jobs limited to files under ``media_root``; the
    styles, backends and encoders offered (and checked) are ``manager``'s. Requests must address
    ``host`` (or one of ``extra_hosts``); see :mod:`montage_core.web.guard`."""
    ui = WebUI(media_root.resolve(), store or JobStore(), manager or get_manager())
    runner = ui.runner
    routes = [
        Route("/", ui.jobs_page), Route("/jobs/new", ui.new_job_page), Route("/jobs", ui.create_job, methods=["POST"]),
        Route("/jobs/{job_id}", ui.job_page), Route("/jobs/{job_id}/events", ui.events),
        Route("/jobs/{job_id}/timeline", ui.timeline), Route("/jobs/{job_id}/thumb/{index:int}", ui.thumb),
        Route("/jobs/{job_id}/download/{kind}", ui.download), Route("/jobs/{job_id}/log", ui.log),
        Route("/jobs/{job_id}/cancel", ui.cancel, methods=["POST"]), Route("/jobs/{job_id}/retry", ui.retry, methods=["POST"]),
        Route("/upload", ui.upload, methods=["POST"]), Route("/api/media", ui.api_media), Route("/api/file", ui.api_file),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        yield
        runner.stop_all()  # jobs started here do not outlive the server

    app = Starlette(routes=routes, middleware=[Middleware(GuardMiddleware, hosts=allowed_hosts(host, extra_hosts),
                                                          token=token)],
                    exception_handlers={MontageError: ui.montage_error}, lifespan=lifespan)
    app.state.runner = runner
    return app
