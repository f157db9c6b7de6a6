"""Model cards are Markdown rendered safely; reports render whatever shape they have."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hub.registry import services
from hub.registry.access import Actor
from hub.registry.lineage import LineageSpec, Ref
from hub.web import reports
from hub.web.rendering import front_matter, render_markdown
from tests.factories import adapter_files
from tests.web.hubdata import HubData, push

ClientFor = Callable[[User | None], Client]

HOSTILE = """# Hello

<script>alert("script")</script>
<img src="x.png" onerror="alert('img')">
<a href="javascript:alert('link')">click</a>
<a href="JaVaScRiPt:alert('mixed')">mixed</a>
<a href=" javascript:alert('space')">space</a>
[md link](javascript:alert('md'))
![md image](javascript:alert('img2'))
<iframe src="https://evil.example/"></iframe>
<svg onload="alert('svg')"><circle r="4"/></svg>
<div style="background:url(javascript:alert('css'))" onclick="alert('div')">styled</div>
<form action="https://evil.example/"><input name="q"><button>go</button></form>
<object data="x.swf"></object><embed src="x.swf">
<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">data</a>
<p title="x" onmouseover="alert('p')">hover</p>
<style>body { display: none }</style>
<meta http-equiv="refresh" content="0;url=https://evil.example/">
"""


def test_hostile_markdown_is_sanitized() -> None:
    html = render_markdown(HOSTILE).lower()
    for bad in (
        "<script",
        "onerror",
        "onload",
        "onclick",
        "onmouseover",
        "javascript:",
        "<iframe",
        "<svg",
        "<form",
        "<input",
        "<object",
        "<embed",
        "data:text/html",
        "<style",
        "style=",
        "<meta",
    ):
        assert bad not in html, bad
    assert "<h2>hello</h2>" in html  # formatting survives, one level down
    assert 'rel="noopener noreferrer nofollow ugc"' in html
    assert "styled" in html
    assert "hover" in html


def test_markdown_features_and_front_matter() -> None:
    text = (
        "---\nlicense: mit\ntags: [a, b]\n---\n## Usage\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\nx = 1\n```\n"
    )
    html = render_markdown(text)
    assert "<h3>Usage</h3>" in html
    assert "<table" in html
    assert "<td>1</td>" in html
    assert '<code class="language-python">x = 1' in html
    assert "license: mit" not in html
    assert front_matter(text) == {"license": "mit", "tags": ["a", "b"]}
    assert front_matter("no header") == {}
    assert front_matter("---\n: [bad\n---\n") == {}


@pytest.mark.django_db
def test_a_hostile_card_is_safe_on_the_page(hub: HubData, client_for: ClientFor) -> None:
    actor = Actor(user=hub.alice)
    repo = services.repository_create(
        actor=actor, namespace="alice", name="hostile-card", kind="adapter"
    )
    push(
        actor,
        repo,
        {**adapter_files(seed=11), "README.md": HOSTILE.encode()},
        spec=LineageSpec(base=Ref("acme/tiny-llama", "v1")),
    )
    page = client_for(None).get("/alice/hostile-card").content.decode()
    card = page[page.index('class="markdown"') : page.index('id="usage"')]
    lowered = card.lower()
    for bad in ("<script", "onerror", "onload", "onclick", "javascript:", "<iframe", "<svg"):
        assert bad not in lowered, bad
    assert "<h2>Hello</h2>" in card


def test_reports_of_any_shape_render() -> None:
    assert reports.findings_of(None) == []
    assert reports.findings_of({"findings": "nope"}) == []
    odd = reports.findings_of(
        {"findings": [{"code": "x", "severity": "catastrophic", "message": 3}, "junk"]}
    )
    assert odd == [reports.Finding(code="x", severity="info", message="3")]
    assert reports.fact_rows("adapter", {}) == []
    rows = reports.fact_rows("adapter", {"max_rank": 8, "r": 4, "target_modules": "all-linear"})
    assert [(r.label, r.value) for r in rows] == [
        ("Rank", "8 (config r = 4)"),
        ("Target modules", "all-linear"),
    ]
    assert reports.module_stats({"module_stats": [{"module": "m", "rank": 2}, 5]})[1] == 2
    compat = reports.compatibility(
        {"max_rank": 64, "fits_vllm_default_rank": False, "use_dora": True, "layout": "peft"},
        [reports.Finding("rank_above_vllm_max", "warning", "too big")],
    )
    assert [(c.engine, c.level) for c in compat] == [
        ("vLLM", "bad"),
        ("vLLM", "bad"),
        ("PEFT", "ok"),
    ]
    assert reports.human_count(22_700_000) == "22.7M"
    assert reports.human_count(1_000_000) == "1M"
    assert reports.human_count(1024) == "1,024"
    assert reports.human_bytes(8192) == "8.0 KB"
