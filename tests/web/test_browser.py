"""End to end in a real browser: Chromium driven by Playwright against a live server and a
real Celery worker. Sign up, create a token, publish an adapter through the upload form,
follow its job, open the lineage graph, compare two versions; check every page with
axe-core; save screenshots of the main pages into docs/screenshots/.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from hub.registry.models import Job, Repository, Version
from tests.factories import adapter_files
from tests.web.hubdata import HubData, add_merged, build

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "screenshots"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "a-long-passphrase-9"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium"),
]

# Playwright's sync API keeps an event loop running in this thread; the test's own ORM
# calls are ordinary synchronous ones, so Django's async-safety check does not apply.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def hub(settings: Any) -> HubData:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    data = build()
    add_merged(data.instruct_v1)
    return data


def axe_check(page: Any, what: str) -> None:
    """No serious or critical axe-core violations on the page as it is now."""
    # Evaluated over the DevTools protocol: the page's CSP forbids inline scripts, and a
    # <script> tag with axe's source would be one.
    page.evaluate(AXE.read_text())
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))"
    )
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    assert not bad, f"{what}: {json.dumps(bad, indent=2)}"


def shot(page: Any, name: str, *, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # the sticky header belongs at the top
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def publish(page: Any, folder: Path, *, base: str, message: str) -> None:
    """Fill the upload form with a folder and publish; wait for the result panel."""
    page.set_input_files("#pick-folder", str(folder))
    page.wait_for_selector("#file-rows tr")
    page.fill("#base-model", base)
    page.fill("#message", message)
    page.click("#upload-button")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)


def wait_final_job(page: Any) -> str:
    # A text match, not wait_for_function: the page's CSP forbids eval, which that uses.
    expect(page.locator("#job-state")).to_have_text(
        re.compile(r"^\s*(succeeded|failed|cancelled)\s*$"), timeout=90_000
    )
    return str(page.inner_text("#job-state")).strip()


def test_sign_up_token_publish_follow_job_lineage_and_compare(
    live_server: Any, celery_worker: Any, browser: Any, hub: HubData, tmp_path: Path
) -> None:
    url = live_server.url
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The hub's own pages and scripts must live within its Content-Security-Policy.
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )

    # Sign up: the account and its namespace exist, and we are signed in.
    page.goto(f"{url}/signup")
    axe_check(page, "signup")
    page.fill("#id_username", "nina")
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.click("form.form button[type=submit]")
    page.wait_for_url(f"{url}/")
    assert "nina" in page.inner_text(".top-nav")

    # A write token, shown once.
    page.goto(f"{url}/settings/tokens")
    page.fill("#id_name", "laptop")
    page.check("input[name=scope][value=write]")
    page.click("form.form button[type=submit]")
    secret = page.inner_text("#new-token").strip()
    assert secret.startswith("strata_")
    axe_check(page, "tokens")
    shot(page, "tokens")

    # Create a repository, then publish a folder into it through the upload form.
    page.goto(f"{url}/new")
    axe_check(page, "new repository")
    page.fill("#id_name", "chat-lora")
    page.fill("#id_description", "Chat adapter published from the browser.")
    page.fill("#id_tags", "chat, browser")
    page.click("form.form button[type=submit]")
    page.wait_for_url(f"{url}/nina/chat-lora/upload")
    axe_check(page, "upload")
    v1 = write_folder(
        tmp_path / "chat-lora",
        {
            **adapter_files(rank=4, seed=21, base="acme/tiny-llama"),
            "README.md": b"# Chat LoRA\n\nPublished from the browser.\n",
            ".DS_Store": b"junk",
        },
    )
    publish(page, v1, base="acme/tiny-llama", message="First from the browser")
    assert "nina/chat-lora v1 is published" in page.inner_text("#result-text")
    assert page.inner_text("#overall-percent") == "100%"
    # Hidden files were skipped; the rest went in under their names inside the folder.
    version = Version.objects.get(repository__name="chat-lora", number=1)
    assert sorted(version.files.values_list("path", flat=True)) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert version.message == "First from the browser"
    assert version.parent_edges.get(kind="adapter_of").parent_id == hub.base_v1.pk

    # The validation job's live status: the page shows whatever the worker decided.
    state = wait_final_job(page)
    shot(page, "publish")
    job = Job.objects.get(version=version, kind="validate")
    assert state == job.state
    if job.state == "failed":  # no validation handler wired yet: said plainly
        assert job.error_code in page.inner_text("#job-detail")

    # Its job page: state, timings, device, log tail.
    page.click("#job-link")
    page.wait_for_url(f"{url}/jobs/{job.pk}")
    assert page.inner_text("#job-state").strip() == job.state
    assert "Timings" in page.inner_text("main")
    if job.log_tail:
        assert job.log_tail.splitlines()[0] in page.inner_text("#job-log")
    axe_check(page, "job")
    shot(page, "job")
    page.goto(f"{url}/jobs")
    assert "nina/chat-lora v1" in page.inner_text("main")
    axe_check(page, "jobs")

    # A second version, from the repository page's upload button.
    page.goto(f"{url}/nina/chat-lora")
    page.click("text=Upload a new version")
    v2 = write_folder(
        tmp_path / "chat-lora-2",
        {
            **adapter_files(rank=8, seed=22, base="acme/tiny-llama"),
            "README.md": b"# Chat LoRA\n\nPublished from the browser.\n",
        },
    )
    publish(page, v2, base="acme/tiny-llama@v1", message="Rank 8")
    assert "v2 is published" in page.inner_text("#result-text")
    # The unchanged README was already on the hub: nothing was sent for it.
    readme_row = page.locator("#file-rows tr", has_text="README.md")
    assert "published" in readme_row.inner_text()
    wait_final_job(page)

    # Open the lineage graph from the version page and follow a node to the base model.
    page.click("#version-link")
    page.wait_for_url(f"{url}/nina/chat-lora/v/v2")
    page.click(".repo-actions >> text=Lineage")
    page.wait_for_url(f"{url}/nina/chat-lora/v/v2/lineage")
    assert page.locator("svg.lineage-svg a").count() >= 2
    page.click('svg.lineage-svg a[href="/acme/tiny-llama/v/v1"]')
    page.wait_for_url(f"{url}/acme/tiny-llama/v/v1")
    assert "Adapters built on tiny-llama" in page.inner_text("main")
    axe_check(page, "base model")

    # Compare the two versions.
    page.goto(f"{url}/nina/chat-lora")
    page.click(".repo-actions >> text=Compare versions")
    page.wait_for_url(f"{url}/nina/chat-lora/compare/v1...v2")
    changed = page.eval_on_selector_all(
        "table.diff tr.row-changed",
        "rows => rows.map(r => [...r.children].map(c => c.firstChild.textContent.trim()))",
    )
    assert ["r", "4", "8"] in changed
    assert ["lora_alpha", "8", "16"] in changed
    axe_check(page, "compare (browser-published)")

    # The token works against the API the CLI uses.
    whoami = page.request.get(f"{url}/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert whoami.json()["username"] == "nina"
    assert not errors, errors
    context.close()


def test_pages_pass_axe_and_screenshots(live_server: Any, browser: Any, hub: HubData) -> None:
    url = live_server.url
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.goto(f"{url}/login?next=/")
    axe_check(page, "login")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "correct-horse-battery")
    page.click("form.form button[type=submit]")
    page.wait_for_url(f"{url}/")
    pages = {
        "home": "/",
        "search": "/search?kind=adapter",
        "adapter": "/acme/instruct-lora",
        "adapter-stacked": "/acme/dialogue-lora",
        "base-model": "/acme/tiny-llama",
        "lineage": "/acme/dialogue-lora/v/v1/lineage",
        "compare": "/alice/sts-lora/compare/v1...v2",
        "organization": "/acme",
        "merged": "/acme/instruct-lora/v/v1-merged",
        "dataset": "/acme/eval-set",
        "not-found": "/acme/no-such-thing",
    }
    for name, path in pages.items():
        page.goto(url + path)
        axe_check(page, name)
        if name in ("home", "search", "adapter", "lineage", "compare"):
            shot(page, name)
    # Interactive states: an open details panel, the usage tabs, the account menu.
    page.goto(f"{url}/acme/dialogue-lora")
    page.click("summary:has-text('Per-module statistics')")
    page.click("[role=tab]:has-text('vLLM')")
    assert "--max-lora-rank 32" in page.inner_text("#snippet-vllm")
    assert page.is_hidden("#snippet-cli")
    page.keyboard.press("ArrowLeft")
    assert page.is_visible("#snippet-peft")
    axe_check(page, "adapter with tabs and details open")
    page.click(".menu summary")
    axe_check(page, "account menu open")
    context.close()

    # Phone width: the adapter page still reads well at 375 px.
    phone = browser.new_context(viewport={"width": 375, "height": 812}, device_scale_factor=2)
    mobile = phone.new_page()
    mobile.goto(f"{url}/acme/instruct-lora")
    width = mobile.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page scrolls sideways at 375 px ({width} px wide)"
    axe_check(mobile, "adapter at 375 px")
    shot(mobile, "adapter-phone", full_page=False)
    mobile.goto(f"{url}/search?kind=adapter")
    assert mobile.evaluate("document.documentElement.scrollWidth") <= 375
    phone.close()


def test_browser_sha256_matches_python(live_server: Any, browser: Any, db: Any) -> None:
    """The incremental SHA-256 used without crypto.subtle (plain http, or big files)."""
    page = browser.new_page()
    page.goto(f"{live_server.url}/login")
    page.add_script_tag(url=f"{live_server.url}/static/web/sha256.js")
    data = bytes(range(256)) * 4099 + b"tail"  # crosses block and slice boundaries
    cases = [b"", b"abc", b"a" * 55, b"a" * 56, b"a" * 64, data]
    got = page.evaluate(
        "cases => cases.map(c => new StrataSha256.Sha256().update(new Uint8Array(c)).hex())",
        [list(c) for c in cases[:-1]],
    )
    assert got == [hashlib.sha256(c).hexdigest() for c in cases[:-1]]
    chunked = page.evaluate(
        """bytes => { const h = new StrataSha256.Sha256(); const a = new Uint8Array(bytes);
        for (let i = 0; i < a.length; i += 1000) h.update(a.subarray(i, i + 1000));
        return h.hex(); }""",
        list(data),
    )
    assert chunked == hashlib.sha256(data).hexdigest()
    page.close()


def test_private_repository_stays_hidden_in_the_browser(
    live_server: Any, browser: Any, hub: HubData
) -> None:
    page = browser.new_page()
    for path in ("/", "/search?q=secret", "/acme", "/acme/instruct-lora"):
        page.goto(live_server.url + path)
        assert "secret-lora" not in page.content()
    page.goto(f"{live_server.url}/acme/secret-lora")
    assert "Not found" in page.inner_text("main")
    assert Repository.objects.filter(name="secret-lora").exists()
    page.close()


def test_publish_on_the_local_backend_in_parts(
    live_server: Any, browser: Any, settings: Any, local_store: Path, tmp_path: Path
) -> None:
    """The embedded setup: presigned PUTs go to the hub's own /blobs/ URLs, and a file
    above the multipart threshold goes up in parts whose ETags the page collects."""
    settings.PUBLIC_BASE_URL = live_server.url
    settings.MULTIPART_THRESHOLD_BYTES = 64 * 1024
    settings.MULTIPART_PART_BYTES = 48 * 1024
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    hub = build()
    files = adapter_files(rank=512, seed=31, base="acme/tiny-llama")
    assert len(files["adapter_model.safetensors"]) > 2 * 48 * 1024  # three parts
    context = browser.new_context()
    context.add_cookies(
        [{"name": "sessionid", "value": session_for(hub.alice), "url": live_server.url}]
    )
    page = context.new_page()
    page.goto(f"{live_server.url}/acme/instruct-lora/upload")
    page.set_input_files(
        "#pick-files", [str(p) for p in write_folder(tmp_path / "big", files).iterdir()]
    )
    page.fill("#base-model", "acme/tiny-llama@v1")
    page.click("#upload-button")
    page.wait_for_selector("#result:not([hidden]), #upload-error:not([hidden])", timeout=60_000)
    assert page.is_hidden("#upload-error"), page.inner_text("#upload-error")
    assert "acme/instruct-lora v2 is published" in page.inner_text("#result-text")
    v2 = Version.objects.get(repository=hub.instruct, number=2)
    weights = v2.files.get(path="adapter_model.safetensors").blob
    assert weights.sha256 == hashlib.sha256(files["adapter_model.safetensors"]).hexdigest()
    stored = (local_store / weights.storage_key).read_bytes()
    assert stored == files["adapter_model.safetensors"]
    context.close()


def session_for(user: Any) -> str:
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return str(session.session_key)
