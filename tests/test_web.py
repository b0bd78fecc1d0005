"""`montage serve` in a real browser (Debian's chromium driven by Playwright)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from montage_core.testing import MediaFactory, probe_frames

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture
def media_root(media: MediaFactory, tmp_path: Path) -> Path:
    root = tmp_path / "media root"
    for k, shots in enumerate([[(0, 2.0), (1, 2.0)], [(2, 2.0), (3, 2.0)], [(4, 2.0), (5, 2.0)],
                               [(6, 2.0), (7, 2.0)], [(1, 2.0), (3, 2.0)], [(5, 2.0), (0, 2.0)]]):
        media.clip(shots, size=(640, 360), name=str(root / "clips" / f"clip {k}.mp4"))
    (root / "clips" / "broken.mp4").write_text("not a video at all")
    music, _ = media.music(seconds=10)
    (root / "song.wav").write_bytes(music.read_bytes())
    return root


def _csrf(page) -> str:  # type: ignore[no-untyped-def]
    """This browser's CSRF token (the cookie the pages echo in their forms)."""
    return next(c["value"] for c in page.context.cookies() if c["name"] == "montage_csrf")


def _start_server(media_root: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """`montage serve` on a free port, once it accepts connections."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "montage_core", "serve", "--media-root", str(media_root),
                                "--port", str(port), *extra], env={**os.environ, "MONTAGE_WORKERS": "2"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture
def server(media_root: Path) -> Iterator[str]:
    process, url = _start_server(media_root)
    yield url
    process.terminate()
    process.wait(timeout=20)


def _run_job_in_the_browser(browser, url: str, backend: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(f"{url}/jobs/new")
    clips = [o for o in page.eval_on_selector_all("#clips option", "els => els.map(e => e.value)")]
    assert "clips/broken.mp4" in clips and len(clips) == 7
    page.select_option("#clips", clips)
    page.select_option("#music", "song.wav")
    page.select_option("#backend", backend)
    page.select_option("#quality", "preview")
    page.select_option("#resolution", "640x360")
    page.select_option("#fps", "25")
    page.fill("#seed", "2")
    assert "unavailable" not in page.inner_text("#style")
    page.click("#submit")
    page.wait_for_url(f"{url}/jobs/*")

    widths, shot_mid_run = set(), False
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        widths.add(page.eval_on_selector("#stage-analysis .bar > div", "e => e.style.width"))
        rows = page.locator("tr.worker")
        if not shot_mid_run and rows.count() and page.inner_text("#state") == "running":
            text = rows.first.inner_text()
            if "clip " in text and " / " in text:
                page.screenshot(path=str(ARTIFACTS / f"job-{backend}-mid-run.png"), full_page=True)
                shot_mid_run = True
        if page.inner_text("#state") in ("done", "failed"):
            break
        time.sleep(0.1)
    assert page.inner_text("#state") == "done", page.inner_text("#log")
    assert shot_mid_run, "never saw a worker row with a clip name and its position"
    assert len(widths) >= 3, f"the progress bar did not advance in steps: {widths}"
    workers = page.locator("tr.worker").all_inner_texts()
    assert workers and all(w.startswith("worker-") for w in workers), workers
    # The bad clip failed alone, with its own error text on the page.
    page.wait_for_selector("li.failed-shard")
    assert "broken.mp4: not a media file ffmpeg can read" in page.inner_text("#failed")
    page.wait_for_selector("#thumbs img")
    page.wait_for_function("() => [...document.querySelectorAll('#thumbs img')].every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(ARTIFACTS / f"job-{backend}-finished.png"), full_page=True)
    # The result plays in the page; finished jobs offer neither Cancel nor Retry; workers' clocks stopped.
    page.wait_for_function("() => document.getElementById('player').readyState >= 1")
    assert abs(page.eval_on_selector("#player", "v => v.duration") - 10) <= 0.1
    assert page.locator("#cancel").is_hidden() and page.locator("#retry").is_hidden()
    elapsed = page.locator("tr.worker").all_inner_texts()
    time.sleep(1.5)
    assert page.locator("tr.worker").all_inner_texts() == elapsed
    job_id = page.url.rsplit("/", 1)[-1]
    with page.expect_download() as download:
        page.click("#download-video")
    assert download.value.suggested_filename == f"{job_id}.mp4"  # named after the job, in a folder of its own
    target = tmp_path / f"downloaded-{backend}.mp4"
    download.value.save_as(target)
    frames, duration = probe_frames(target)
    assert frames == 250 and abs(duration - 10) <= 0.04
    page.goto(url)
    assert "done" in page.inner_text("#jobs")
    page.close()


def test_local_job_from_the_browser(browser, server: str, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    _run_job_in_the_browser(browser, server, "local", tmp_path)


def test_dask_job_from_the_browser(browser, server: str, tmp_path: Path) -> None:
    pytest.importorskip("montage_backend_dask")
    ARTIFACTS.mkdir(exist_ok=True)
    _run_job_in_the_browser(browser, server, "dask", tmp_path)


def test_paths_outside_the_media_root_are_refused(browser, server: str, media_root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.mp4"
    outside.write_text("x")
    (media_root / "escape.mp4").symlink_to(outside)
    page = browser.new_page()
    page.goto(server)
    for path in ("../secret.mp4", "escape.mp4", "/etc/passwd"):
        response = page.request.get(f"{server}/api/file", params={"path": path})
        assert response.status in (400, 403) and "media root" in response.text(), (path, response.text())
    response = page.request.post(f"{server}/jobs", form={"clips": "../secret.mp4", "music": "song.wav",
                                                          "csrf": _csrf(page)})
    assert response.status == 403 and "outside the media root" in response.text()
    assert "escape.mp4" not in page.request.get(f"{server}/api/media").text()
    page.close()


def test_token_and_cancel(media_root: Path, tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    """With --token every request needs it; a running job can be cancelled from its page."""
    process, url = _start_server(media_root, "--token", "s3cret")
    try:
        page = browser.new_page()
        assert page.goto(url).status == 401
        assert page.goto(f"{url}/?token=wrong").status == 401
        assert page.goto(f"{url}/?token=s3cret").status == 200  # sets the cookie
        page.goto(f"{url}/jobs/new")
        page.select_option("#clips", ["clips/clip 0.mp4", "clips/clip 1.mp4", "clips/clip 2.mp4"])
        page.select_option("#music", "song.wav")
        page.select_option("#resolution", "1920x1080")
        page.select_option("#quality", "high")
        page.click("#submit")
        page.wait_for_url(f"{url}/jobs/*")
        page.wait_for_function("() => document.querySelector('#state').textContent === 'running'", timeout=60000)
        page.click("#cancel")
        page.wait_for_load_state()
        assert page.inner_text("#state") == "cancelled"
        page.close()
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_cluster_pod_logs_and_diagnoses_in_the_log_panel(montage_home: Path, media_root: Path, browser) -> None:
    """Pods are deleted an hour after their Job; the job store keeps their logs for this panel."""
    from montage_core.jobstore import JobStore

    store = JobStore()
    job_id = store.create_job("dynamic", "k8s", {})
    store.worker_log(job_id, "montage-x-analys-1-ab12-1-f00ba", stage="analysis", node="node-2",
                     diagnosis="OOMKilled: the shard needs more memory than its limit", text="decoding clip 1.mp4\n")
    store.finish_job(job_id, "failed", error="1 of 4 clips failed")
    process, url = _start_server(media_root)
    try:
        page = browser.new_page()
        page.goto(f"{url}/jobs/{job_id}")
        page.wait_for_function("() => document.getElementById('log').textContent.includes('OOMKilled')")
        text = page.inner_text("#log")
        assert "── montage-x-analys-1-ab12-1-f00ba (analysis, node node-2): OOMKilled" in text
        assert "decoding clip 1.mp4" in text
        page.close()
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_the_form_gets_the_clis_checks(browser, server: str) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page()
    page.goto(f"{server}/jobs/new")
    assert page.eval_on_selector("#music", "s => s.value") == ""  # no music until the user chooses one
    clip = {"clips": "clips/clip 0.mp4", "music": "song.wav"}
    for form, status, message in (
            ({"clips": "clips/clip 0.mp4"}, 400, "choose the music"),
            ({**clip, "resolution": "abc"}, 400, "resolution 'abc' is not WIDTHxHEIGHT"),
            ({**clip, "resolution": "641x361"}, 400, "641x361: width and height must be positive even numbers"),
            ({**clip, "fps": "fast"}, 400, "fps 'fast' is not a number"),
            ({**clip, "style": "dynamc", "params": "nope=1"}, 400, "did you mean 'dynamic'"),
            ({**clip, "loudness": "loud"}, 400, "is not a number of LUFS or 'off'"),
            ({**clip, "duration": "nan"}, 400, "--duration nan must be a positive number of seconds")):
        response = page.request.post(f"{server}/jobs", form={**form, "csrf": _csrf(page)},
                                     headers={"accept": "application/json"})
        assert response.status == status and message in response.json()["error"], (form, response.text())
    page.close()


# ----------------------------------------------------------------------------- attacks
def _jobs(server: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{server}/") as response:
        return response.read().decode().count('href="/jobs/2')


def test_another_site_cannot_start_cancel_or_upload(browser, server: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A page on another origin, in the same real browser that has the UI open: every attempt refused."""
    import http.server
    import threading

    page = browser.new_page()
    page.goto(f"{server}/jobs/new")  # the user has the UI open: the browser holds its cookies
    before = _jobs(server)
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "index.html").write_text(f"""<html><body>
<form id="f" method="post" action="{server}/jobs">
  <input name="clips" value="clips/clip 0.mp4"><input name="music" value="song.wav"></form>
<script>
  fetch("{server}/upload", {{method: "POST", mode: "no-cors", body: new FormData()}});
  document.getElementById("f").submit();
</script></body></html>""")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(evil))  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.2", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        attacker = browser.new_page()
        responses = []
        attacker.on("response", lambda r: responses.append((r.url, r.status)))
        attacker.goto(f"http://127.0.0.2:{httpd.server_port}/index.html")
        attacker.wait_for_url(f"{server}/jobs")
        assert f"{server}/jobs" in dict(responses) and dict(responses)[f"{server}/jobs"] == 403
        assert "cross-site request refused" in attacker.content()
    finally:
        httpd.shutdown()
    assert _jobs(server) == before
    page.close()


def test_a_rebound_host_name_and_a_bad_token_are_refused(server: str, media_root: Path) -> None:
    import http.client
    from urllib.parse import urlparse

    where = urlparse(server)
    for host, status in (("evil.example", 400), (f"evil.example:{where.port}", 400), (f"localhost:{where.port}", 200),
                         (f"127.0.0.1:{where.port}", 200)):
        connection = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
        connection.request("GET", "/api/media", headers={"Host": host})
        response = connection.getresponse()
        assert response.status == status, (host, response.status)
        body = response.read().decode()
        if status == 400:
            assert "is not served here" in body and "song.wav" not in body
            assert response.getheader("x-content-type-options") == "nosniff"  # refusals carry the headers too
            assert "frame-ancestors 'none'" in response.getheader("content-security-policy", "")
    process, url = _start_server(media_root, "--token", "s3cret")
    try:
        import urllib.error
        import urllib.request

        from urllib.parse import quote

        for token in ("wrong", "sécret", "\x00"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"{url}/?token={quote(token)}")
            assert refused.value.code == 401, token
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_hidden_files_and_other_jobs_files_are_never_served(browser, montage_home: Path,  # type: ignore[no-untyped-def]
                                                            media_root: Path, tmp_path: Path) -> None:
    from montage_core.jobstore import JobStore

    process, server = _start_server(media_root)
    request = browser.new_context().request
    try:
        _hidden_and_foreign(browser, server, media_root, tmp_path, JobStore())
    finally:
        request.dispose()
        process.terminate()
        process.wait(timeout=20)


def _hidden_and_foreign(browser, server: str, media_root: Path, tmp_path: Path, store) -> None:  # type: ignore[no-untyped-def]
    (media_root / ".git").mkdir()
    (media_root / ".git" / "config").write_text("[remote] url = secret")
    (media_root / "clips" / ".key.mp4").write_text("secret")
    page = browser.new_page()
    page.goto(server)
    for path in (".git/config", "clips/.key.mp4", "clips/../.git/config"):
        response = page.request.get(f"{server}/api/file", params={"path": path})
        assert response.status in (400, 403) and "secret" not in response.text(), path
    assert ".key" not in page.request.get(f"{server}/api/media").text()
    # A job from the command line, its video outside the media root: not the web's to serve.
    outside = tmp_path / "private.mp4"
    outside.write_bytes(b"private")
    job_id = store.create_job("dynamic", "local", {})
    store.finish_job(job_id, "done", {"video": str(outside)})
    response = page.request.get(f"{server}/jobs/{job_id}/download/video")
    assert response.status == 403 and b"private" not in response.body()
    # Nor are pictures of it: a cut's thumbnail is a frame of that video.
    clip = str(media_root / "clips" / "clip 0.mp4")
    timeline = tmp_path / "private.timeline.json"
    timeline.write_text(json.dumps({
        "schema": "montage.timeline", "version": 1, "music": str(media_root / "song.wav"), "duration": 1.0,
        "fps": 25.0, "width": 640, "height": 360, "style": "dynamic", "grade": "", "seed": 0,
        "cuts": [{"index": 0, "source": clip, "source_in": 0.0, "source_out": 1.0, "start": 0.0, "end": 1.0,
                  "phase": "intro", "shot": "a#0", "transition": {"kind": "cut", "duration": 0.0}}]}))
    job_id = store.create_job("dynamic", "local", {})
    store.finish_job(job_id, "done", {"video": clip.replace(str(media_root), str(tmp_path / "elsewhere")),
                                      "timeline": str(timeline)})
    (tmp_path / "elsewhere" / "clips").mkdir(parents=True)
    (tmp_path / "elsewhere" / "clips" / "clip 0.mp4").write_bytes(Path(clip).read_bytes())
    response = page.request.get(f"{server}/jobs/{job_id}/thumb/0")
    assert response.status == 403 and not response.body().startswith(b"\xff\xd8")  # no JPEG
    headers = page.request.get(f"{server}/").headers
    assert "'unsafe-inline'" not in headers["content-security-policy"].split("script-src")[1].split(";")[0]
    assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "same-origin"
    page.close()
