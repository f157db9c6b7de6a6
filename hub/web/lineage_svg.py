"""The lineage graph of a version, drawn as SVG on the server.

Columns run left to right from origins to derivations: the base model and the adapters a
version is stacked on or fine-tuned from sit to the left of it, what builds on it to the
right. Every node is a link to its version page. The same edges are also returned as a
plain list, which pages show as the text alternative.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from hub.registry.models import LineageEdge, Repository, Version
from hub.web.queries import LineageWalk

NODE_W, NODE_H = 232, 56
COL_GAP, ROW_GAP, PAD = 96, 20, 12

EDGE_LABELS: dict[str, str] = {
    LineageEdge.Kind.ADAPTER_OF: "base",
    LineageEdge.Kind.STACKED_ON: "stacked on",
    LineageEdge.Kind.FINETUNED_FROM: "fine-tuned from",
    LineageEdge.Kind.COMPOSED_FROM: "composed from",
    LineageEdge.Kind.MERGED_FROM: "merged from",
    LineageEdge.Kind.TRAINED_ON: "trained on",
    LineageEdge.Kind.EVALUATED_ON: "evaluated on",
}
_KIND_ORDER: dict[str, int] = {
    Repository.Kind.BASE_MODEL: 0,
    Repository.Kind.ADAPTER: 1,
    Repository.Kind.DATASET: 2,
}
_EDGE_ORDER: dict[str, int] = {kind: i for i, kind in enumerate(EDGE_LABELS)}


def version_url(version: Version) -> str:
    repo = version.repository
    return reverse("web:version", args=[repo.namespace.name, repo.name, version.label])


@dataclass
class Node:
    key: str
    level: int
    label: str
    detail: str
    url: str | None
    status: str
    kind: str
    root: bool = False
    order: tuple[Any, ...] = ()
    x: int = 0
    y: int = 0


@dataclass(frozen=True)
class EdgeRow:
    """One edge as text: ``child`` <kind> ``parent``."""

    child: str
    child_url: str | None
    kind: str
    parent: str
    parent_url: str | None


@dataclass(frozen=True)
class Drawing:
    svg: SafeString
    rows: list[EdgeRow]
    width: int
    height: int


def _edge_label(edge: LineageEdge) -> str:
    """Base edges go unlabelled (colour and the legend say it); the others say what they are."""
    if edge.kind == LineageEdge.Kind.ADAPTER_OF:
        return ""
    if edge.kind == LineageEdge.Kind.STACKED_ON:
        return f"stacked #{edge.position + 1}"
    return EDGE_LABELS.get(edge.kind, edge.kind)


def _bezier_y_at(path: tuple[int, ...], x: float) -> int:
    """The y of a cubic Bezier (x0 y0 x1 y1 x2 y2 x3 y3) where its x reaches ``x``."""
    x0, y0, cx1, cy1, cx2, cy2, x3, y3 = path
    lo, hi = 0.0, 1.0
    for _ in range(30):
        t = (lo + hi) / 2
        u = 1 - t
        bx = u**3 * x0 + 3 * u * u * t * cx1 + 3 * u * t * t * cx2 + t**3 * x3
        lo, hi = (t, hi) if bx < x else (lo, t)
    t = (lo + hi) / 2
    u = 1 - t
    return round(u**3 * y0 + 3 * u * u * t * cy1 + 3 * u * t * t * cy2 + t**3 * y3)


def _version_node(version: Version, level: int, *, root: bool) -> Node:
    repo = version.repository
    kind = str(Repository.Kind(repo.kind).label)
    return Node(
        key=str(version.pk),
        level=level,
        label=repo.full_name,
        detail=f"{version.label} · {kind}",
        url=version_url(version),
        status=version.status,
        kind=repo.kind,
        root=root,
    )


def _levels(walk: LineageWalk) -> dict[int, int]:
    """Longest-path layering: an ancestor sits left of everything that builds on it."""
    level = {walk.root.pk: 0}
    edges = [e for e in walk.edges if e.parent_id is not None]
    for _ in range(len(walk.nodes) + 1):
        changed = False
        for e in edges:
            child, parent = e.child_id, e.parent_id
            assert parent is not None
            if parent in walk.ancestors and child in level:
                new = min(level.get(parent, 0), level[child] - 1)
                if level.get(parent) != new:
                    level[parent], changed = new, True
            if child in walk.descendants and parent in level:
                new = max(level.get(child, 0), level[parent] + 1)
                if level.get(child) != new:
                    level[child], changed = new, True
        if not changed:
            break
    return level


def draw(walk: LineageWalk) -> Drawing:
    levels = _levels(walk)
    nodes: dict[str, Node] = {}
    for pk, version in walk.nodes.items():
        if pk in levels:
            nodes[str(pk)] = _version_node(version, levels[pk], root=pk == walk.root.pk)
    # How each node hangs off the graph, to order a column: base, then stack order, ...
    touch: dict[str, tuple[int, int]] = {}
    rows: list[EdgeRow] = []
    drawn: list[tuple[LineageEdge, str, str]] = []
    for e in walk.edges:
        child_key = str(e.child_id)
        if child_key not in nodes:
            continue
        if e.parent_id is None:
            parent_key = f"uri:{e.pk}"
            nodes[parent_key] = Node(
                key=parent_key,
                level=nodes[child_key].level - 1,
                label=e.external_uri,
                detail="external dataset",
                url=None,
                status="",
                kind="external",
            )
        else:
            parent_key = str(e.parent_id)
            if parent_key not in nodes:
                continue
        for key in (parent_key, child_key):
            touch[key] = min(touch.get(key, (99, 99)), (_EDGE_ORDER.get(e.kind, 9), e.position))
        drawn.append((e, parent_key, child_key))
        label = EDGE_LABELS.get(e.kind, e.kind)
        if e.kind == LineageEdge.Kind.STACKED_ON:
            label = f"stacked on (#{e.position + 1})"
        parent, child = nodes[parent_key], nodes[child_key]
        rows.append(
            EdgeRow(
                child=f"{child.label} {child.detail.split(' · ')[0]}",
                child_url=child.url,
                kind=label,
                parent=parent.label
                if parent.kind == "external"
                else f"{parent.label} {parent.detail.split(' · ')[0]}",
                parent_url=parent.url,
            )
        )

    columns: dict[int, list[Node]] = {}
    for node in nodes.values():
        node.order = (
            touch.get(node.key, (99, 99)),
            _KIND_ORDER.get(node.kind, 3),
            node.label,
            node.detail,
        )
        columns.setdefault(node.level, []).append(node)
    ordered = sorted(columns)
    tallest = max(len(c) for c in columns.values())
    height = PAD * 2 + tallest * NODE_H + (tallest - 1) * ROW_GAP
    width = PAD * 2 + len(ordered) * NODE_W + (len(ordered) - 1) * COL_GAP
    for ci, level in enumerate(ordered):
        column = sorted(columns[level], key=lambda n: n.order)
        used = len(column) * NODE_H + (len(column) - 1) * ROW_GAP
        top = PAD + (height - 2 * PAD - used) // 2
        for ri, node in enumerate(column):
            node.x = PAD + ci * (NODE_W + COL_GAP)
            node.y = top + ri * (NODE_H + ROW_GAP)

    parts: list[str] = []
    labels: list[str] = []
    for e, parent_key, child_key in drawn:
        p, c = nodes[parent_key], nodes[child_key]
        x1, y1 = p.x + NODE_W, p.y + NODE_H // 2
        x2, y2 = c.x, c.y + NODE_H // 2
        bend = max(30, (x2 - x1) // 2)
        path = (x1, y1, x1 + bend, y1, x2 - bend, y2, x2 - 3, y2)
        parts.append(
            format_html(
                '<path class="edge edge-{}" d="M{} {} C{} {} {} {} {} {}" '
                'marker-end="url(#arrow)"/>',
                e.kind,
                *path,
            )
        )
        label = _edge_label(e)
        if not label:
            continue
        # In the gap just before the child, where no node can cover it.
        lx = x2 - COL_GAP // 2
        ly = _bezier_y_at(path, lx)
        lw = 7 * len(label) + 10
        labels.append(
            format_html(
                '<g class="edge-label"><rect x="{}" y="{}" width="{}" height="18" rx="9"/>'
                '<text x="{}" y="{}" text-anchor="middle">{}</text></g>',
                lx - lw // 2,
                ly - 9,
                lw,
                lx,
                ly + 4,
                label,
            )
        )
    for node in nodes.values():
        status = (
            format_html(
                '<circle class="dot dot-{}" cx="{}" cy="{}" r="4"/>'
                '<text class="node-status" x="{}" y="{}" text-anchor="end">{}</text>',
                node.status,
                node.x + NODE_W - 14,
                node.y + 38,
                node.x + NODE_W - 22,
                node.y + 42,
                node.status,
            )
            if node.status
            else ""
        )
        # Full names, clipped by a nested viewport: what is read out is what is shown.
        body = format_html(
            '<rect class="node-box" x="{}" y="{}" width="{}" height="{}" rx="10"/>'
            '<svg x="{}" y="{}" width="{}" height="{}" overflow="hidden">'
            '<text class="node-name" x="0" y="16">{}</text>'
            '<text class="node-detail" x="0" y="36">{}</text></svg>{}',
            node.x,
            node.y,
            NODE_W,
            NODE_H,
            node.x + 12,
            node.y + 6,
            NODE_W - 24,
            NODE_H - 6,
            node.label,
            node.detail,
            status,
        )
        title = " ".join(part for part in (node.label, node.detail, node.status) if part)
        classes = f"node node-{node.kind}" + (" root" if node.root else "")
        if node.url:
            parts.append(
                format_html(
                    '<a href="{}" class="{}"{}><title>{}</title>{}</a>',
                    node.url,
                    classes,
                    mark_safe(' aria-current="page"') if node.root else "",
                    title,
                    body,
                )
            )
        else:
            parts.append(format_html('<g class="{}"><title>{}</title>{}</g>', classes, title, body))

    svg = format_html(
        '<svg class="lineage-svg" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" '
        'width="{}" height="{}" style="max-width: {}px; min-width: {}px" role="group" '
        'aria-label="{}">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0 0 L10 5 L0 10 z"/></marker>'
        "</defs>{}</svg>",
        width,
        height,
        width,
        height,
        width,
        min(width, 560),
        f"Lineage of {walk.root.repository.full_name} {walk.root.label}",
        mark_safe("".join(str(p) for p in [*parts, *labels])),  # noqa: S308 - built by format_html
    )
    return Drawing(svg=svg, rows=rows, width=width, height=height)
