"""The ``strata`` command. Every command has a ``--json`` form for scripts.

Exit codes: 0 ok, 1 error, 2 usage, 3 auth, 4 not found, 5 validation failed (the hub
refused the content or the version is invalid), 6 network, 130 interrupted.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from strata import config
from strata._version import __version__
from strata.client import KINDS, Client
from strata.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    NotFoundError,
    StrataError,
    UsageError,
    ValidationFailed,
)
from strata.progress import end_status, progress_enabled, status_line
from strata.refs import Ref

SORTS = ("recent", "downloads", "name")


# --- output helpers --------------------------------------------------------------------


def human_size(n: int | float | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], out: TextIO) -> None:
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        line = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        out.write(line + "\n")
        if index == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


class Output:
    def __init__(self, args: argparse.Namespace) -> None:
        self.json = bool(getattr(args, "json", False))
        self.quiet = bool(getattr(args, "quiet", False))
        self.progress = progress_enabled(self.quiet or self.json)

    def emit(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")

    def line(self, text: str = "") -> None:
        sys.stdout.write(text + "\n")

    def note(self, text: str) -> None:
        """Human commentary on stderr; silent with --quiet or --json."""
        if not self.quiet and not self.json:
            sys.stderr.write(text + "\n")


def _client(args: argparse.Namespace, out: Output, **overrides: Any) -> Client:
    offline = True if getattr(args, "offline", False) else None
    return Client(
        getattr(args, "endpoint", None),
        offline=offline,
        progress=out.progress,
        **overrides,
    )


def _job_watcher(out: Output) -> Callable[[dict[str, Any]], None]:
    started = time.monotonic()

    def update(job: dict[str, Any]) -> None:
        tail = (job.get("log_tail") or "").strip().splitlines()
        last = tail[-1] if tail else ""
        elapsed = time.monotonic() - started
        status_line(
            f"{job.get('kind')} job {str(job.get('id'))[:8]}: {job.get('state')} "
            f"({elapsed:.0f}s) {last}",
            enabled=out.progress,
        )

    return update


def _finish_job(out: Output, answer: dict[str, Any], what: str) -> None:
    end_status(enabled=out.progress)
    if out.json:
        out.emit(answer)
        return
    job = answer.get("job") or {}
    state = job.get("state", "queued")
    out.line(f"{what}: job {job.get('id')} {state}")
    if answer.get("version"):
        out.line(f"version: {answer['version']}")
    result = job.get("result")
    if isinstance(result, dict) and result and state == "succeeded":
        for key, value in result.items():
            if key != "version":
                out.line(
                    f"  {key}: {json.dumps(value) if isinstance(value, dict | list) else value}"
                )


def _print_findings(out: Output, report: Any) -> None:
    if not isinstance(report, dict):
        return
    findings = report.get("findings") or []
    for f in findings:
        where = f.get("tensor") or f.get("module") or ""
        where = f" ({where})" if where else ""
        out.line(f"  {f.get('severity', 'info'):7} {f.get('code')}{where}: {f.get('message')}")
    if not findings:
        out.line("  no findings")


# --- commands --------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace, out: Output) -> int:
    token = args.token
    if token == "-" or (token is None and not sys.stdin.isatty()):  # noqa: S105
        token = sys.stdin.readline().strip()
    elif token is None:
        endpoint = config.resolve_endpoint(getattr(args, "endpoint", None))
        token = getpass.getpass(f"Token for {endpoint} (create one on the hub): ")
    client = _client(args, out)
    # The first hub you log in to becomes the default; --default switches it later.
    first = not config.read_config().get("endpoint")
    me = client.login(token, make_default=args.default or first)
    if out.json:
        out.emit({k: v for k, v in me.items() if k != "token"})
    else:
        out.line(f"Logged in to {me['endpoint']} as {me.get('username')}.")
        out.note(f"Token stored in {me['config']} (readable by you only).")
        if os.environ.get("STRATA_TOKEN"):
            out.note("Note: STRATA_TOKEN is set and takes precedence over the stored token.")
    return EXIT_OK


def cmd_logout(args: argparse.Namespace, out: Output) -> int:
    client = _client(args, out)
    removed = client.logout()
    if out.json:
        out.emit({"endpoint": client.endpoint, "removed": removed})
    elif removed:
        out.line(f"Removed the stored token for {client.endpoint}.")
    else:
        out.line(f"No stored token for {client.endpoint}.")
    if os.environ.get("STRATA_TOKEN"):
        out.note("STRATA_TOKEN is still set in your environment.")
    return EXIT_OK


def cmd_whoami(args: argparse.Namespace, out: Output) -> int:
    client = _client(args, out)
    me = client.whoami()
    if out.json:
        out.emit({**me, "endpoint": client.endpoint})
        return EXIT_OK
    orgs = ", ".join(f"{o['name']} ({o['role']})" for o in me.get("orgs") or []) or "none"
    out.line(f"{me.get('username')} on {client.endpoint}")
    out.line(f"  namespace: {me.get('namespace')}")
    out.line(f"  orgs: {orgs}")
    if me.get("token_scope"):
        out.line(f"  token scope: {me['token_scope']}")
    return EXIT_OK


def _training_params(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--training-params is not valid JSON: {exc}", code="usage") from exc
    if not isinstance(data, dict):
        raise UsageError("--training-params must be a JSON object.", code="usage")
    return data


def cmd_push(args: argparse.Namespace, out: Output) -> int:
    client = _client(args, out)
    try:
        result = client.push(
            args.folder,
            args.repo,
            kind=args.kind,
            base=args.base,
            base_revision=args.base_revision,
            parents=args.parent or [],
            finetuned_from=args.finetuned_from,
            datasets=args.dataset or [],
            eval_sets=args.eval_set or [],
            message=args.message,
            training_params=_training_params(args.training_params),
            private=args.private,
            exclude=args.exclude or [],
            wait=args.wait,
            timeout=args.timeout,
            on_status=lambda s: status_line(s + "...", enabled=out.progress),
        )
    except ValidationFailed as exc:
        end_status(enabled=out.progress)
        report = exc.detail.get("report")
        if report is not None and not out.json:
            out.line(f"{args.repo}: version failed validation. Findings:")
            _print_findings(out, report)
        raise
    end_status(enabled=out.progress)
    if out.json:
        out.emit(result.to_json())
        return EXIT_OK
    for s in result.skipped:
        if s.reason != "excluded":
            out.note(f"skipped {s.path}: {s.reason}")
    out.line(f"Pushed {result.repo}@{result.label} ({result.status})")
    out.line(f"  commit: {result.version.get('commit_id')}")
    out.line(f"  url: {result.url}")
    out.note(
        f"  {result.uploaded_files} file(s) uploaded ({human_size(result.bytes_uploaded)}), "
        f"{result.reused_files} already on the hub"
        + (", repository created" if result.created_repo else "")
    )
    if args.wait:
        out.line("Validation report:")
        _print_findings(out, result.version.get("report"))
    return EXIT_OK


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def cmd_pull(args: argparse.Namespace, out: Output) -> int:
    client = _client(args, out)
    if args.include_base and not args.stack:
        raise UsageError("--include-base goes with --stack.", code="usage")
    options: dict[str, Any] = {
        "output_dir": args.output,
        "merged": args.merged,
        "request_merge": args.yes,
        "stack": args.stack,
        "include_base": args.include_base,
        "copy": args.copy,
        "timeout": args.timeout,
    }
    try:
        result = client.pull(args.ref, **options)
    except NotFoundError as exc:
        if exc.code != "merged_missing" or args.yes or out.json or not sys.stdin.isatty():
            raise
        sys.stderr.write(exc.message.split(" Request it")[0] + "\n")
        if not _confirm("Ask the hub to build it now?"):
            raise
        options["request_merge"] = True
        result = client.pull(args.ref, **options)
    if out.json:
        out.emit(result.to_json())
        return EXIT_OK
    stats = result.stats
    source = "cache (offline)" if result.offline else client.endpoint
    out.note(
        f"{result.version.repo}@{result.version.label} from {source}: {stats.files} file(s), "
        f"{human_size(stats.bytes_total)}; downloaded {human_size(stats.bytes_downloaded)}"
        + (f", resumed {human_size(stats.bytes_resumed)}" if stats.bytes_resumed else "")
        + f", {stats.files_cached} from cache, {stats.seconds:.1f}s"
    )
    if result.manifest is not None:
        for index, entry in enumerate(result.stack, 1):
            out.note(f"  {index}. {entry.repo}@{entry.label} -> {entry.path}")
        out.line(str(result.manifest))
    else:
        out.line(str(result.path))
    return EXIT_OK


def cmd_info(args: argparse.Namespace, out: Output) -> int:
    info = _client(args, out).repo_info(args.repo)
    if out.json:
        out.emit(info)
        return EXIT_OK
    main = info.get("main") or {}
    out.line(f"{info['id']}  ({info.get('kind')}, {info.get('visibility')})")
    if info.get("description"):
        out.line(f"  {info['description']}")
    rows = [
        ("base model", info.get("base_model") or "-"),
        ("main", f"{main.get('label')} ({main.get('status')})" if main else "-"),
        ("license", info.get("license") or "-"),
        ("tags", ", ".join(info.get("tags") or []) or "-"),
        ("downloads", info.get("downloads")),
        ("updated", info.get("updated_at")),
    ]
    for key, value in rows:
        out.line(f"  {key + ':':12} {value}")
    return EXIT_OK


def cmd_ls(args: argparse.Namespace, out: Output) -> int:
    repos = _client(args, out).list_repos(
        kind=args.kind,
        base=args.base,
        owner=args.owner,
        tag=args.tag,
        license=args.license,
        status=args.status,
        q=getattr(args, "query", None) or args.q,
        sort=args.sort,
        limit=args.limit,
    )
    if out.json:
        out.emit(repos)
        return EXIT_OK
    if not repos:
        out.note("No repositories match.")
        return EXIT_OK
    rows = [
        (
            r["id"],
            r.get("kind"),
            ((r.get("main") or {}).get("label") or "-")
            + (f" ({r['main']['status']})" if r.get("main") else ""),
            r.get("base_model") or "-",
            r.get("downloads"),
            (r.get("updated_at") or "")[:10],
        )
        for r in repos
    ]
    table(rows, ["REPO", "KIND", "MAIN", "BASE", "DOWNLOADS", "UPDATED"], sys.stdout)
    return EXIT_OK


def cmd_versions(args: argparse.Namespace, out: Output) -> int:
    versions = _client(args, out).versions(args.repo)
    if out.json:
        out.emit(versions)
        return EXIT_OK
    rows = [
        (
            v["label"],
            v.get("status"),
            human_size(v.get("total_size")),
            v.get("downloads"),
            (v.get("created_at") or "")[:19].replace("T", " "),
            v.get("commit_id", "")[:12],
            (v.get("message") or "").splitlines()[0][:50] if v.get("message") else "",
        )
        for v in versions
    ]
    table(
        rows, ["VERSION", "STATUS", "SIZE", "DOWNLOADS", "CREATED", "COMMIT", "MESSAGE"], sys.stdout
    )
    return EXIT_OK


def cmd_files(args: argparse.Namespace, out: Output) -> int:
    files = _client(args, out).files(args.ref)
    if out.json:
        out.emit(files)
        return EXIT_OK
    rows = [(f["path"], human_size(f["size"]), f["sha256"][:16]) for f in files]
    table(rows, ["PATH", "SIZE", "SHA256"], sys.stdout)
    return EXIT_OK


def render_lineage(graph: dict[str, Any]) -> list[str]:
    """A readable tree: what the version is built on, then what was built on it."""
    nodes = {n["id"]: n for n in graph.get("nodes") or []}
    root = graph.get("root") or {}
    root_id = next(
        (i for i, n in nodes.items() if n.get("commit_id") == root.get("commit_id")), None
    )
    ups: dict[Any, list[dict[str, Any]]] = {}
    downs: dict[Any, list[dict[str, Any]]] = {}
    for e in graph.get("edges") or []:
        ups.setdefault(e["child"], []).append(e)
        if e.get("parent") is not None:
            downs.setdefault(e["parent"], []).append(e)

    def label(n: dict[str, Any]) -> str:
        return f"{n['repo']}@{n['label']} ({n.get('kind')}, {n.get('status')})"

    order = {
        "adapter_of": 0,
        "stacked_on": 1,
        "finetuned_from": 2,
        "trained_on": 3,
        "evaluated_on": 4,
    }
    lines = [label(root)]

    def walk(node_id: Any, prefix: str, seen: set[Any], up: bool) -> None:
        edges = (ups if up else downs).get(node_id, [])
        edges = sorted(edges, key=lambda e: (order.get(e["kind"], 9), e.get("position") or 0))
        for i, e in enumerate(edges):
            last = i == len(edges) - 1
            branch = "└── " if last else "├── "
            kind = e["kind"] + (f"[{e['position']}]" if e["kind"] == "stacked_on" else "")
            other = e.get("parent") if up else e.get("child")
            if other is None:
                lines.append(f"{prefix}{branch}{kind}: {e.get('external_uri')}")
                continue
            node = nodes.get(other)
            if node is None:
                continue
            text = label(node)
            if other in seen:
                lines.append(f"{prefix}{branch}{kind}: {text} (see above)")
                continue
            lines.append(f"{prefix}{branch}{kind}: {text}")
            walk(other, prefix + ("    " if last else "│   "), seen | {other}, up)

    if root_id is not None:
        walk(root_id, "", {root_id}, True)
        if downs.get(root_id):
            lines.append("")
            lines.append("Built on this version:")
            walk(root_id, "", {root_id}, False)
    stack = graph.get("stack") or []
    if stack:
        lines.append("")
        lines.append(
            "Stack (apply in order): " + " -> ".join(f"{s['repo']}@{s['label']}" for s in stack)
        )
    return lines


def cmd_lineage(args: argparse.Namespace, out: Output) -> int:
    graph = _client(args, out).lineage(args.ref, depth=args.depth)
    if out.json:
        out.emit(graph)
        return EXIT_OK
    for line in render_lineage(graph):
        out.line(line)
    return EXIT_OK


def cmd_merge(args: argparse.Namespace, out: Output) -> int:
    client = _client(args, out)
    answer = client.merge(
        args.ref,
        dtype=args.dtype,
        wait=args.wait,
        timeout=args.timeout,
        on_update=_job_watcher(out),
    )
    _finish_job(out, answer, f"merge of {args.ref}")
    return EXIT_OK


def _parse_input(text: str) -> tuple[str, float]:
    ref, sep, weight = text.rpartition(":")
    if not sep:
        ref, weight = text, "1"
    Ref.parse(ref)
    try:
        return ref, float(weight)
    except ValueError as exc:
        raise UsageError(f"Bad weight in {text!r}; use REF[:WEIGHT].", code="usage") from exc


def cmd_compose(args: argparse.Namespace, out: Output) -> int:
    client = _client(args, out)
    answer = client.compose(
        [_parse_input(i) for i in args.inputs],
        args.target,
        method=args.method,
        rank=args.rank,
        message=args.message,
        wait=args.wait,
        timeout=args.timeout,
        on_update=_job_watcher(out),
    )
    _finish_job(out, answer, f"compose into {args.target}")
    return EXIT_OK


def cmd_benchmark(args: argparse.Namespace, out: Output) -> int:
    client = _client(args, out)
    answer = client.benchmark(
        args.ref,
        eval_sets=args.eval_set or [],
        wait=args.wait,
        timeout=args.timeout,
        on_update=_job_watcher(out),
    )
    _finish_job(out, answer, f"benchmark of {args.ref}")
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace, out: Output) -> int:
    client = _client(args, out)
    if args.job_id:
        job = (
            client.wait_job(args.job_id, timeout=args.timeout, on_update=_job_watcher(out))
            if args.wait
            else client.job(args.job_id)
        )
        end_status(enabled=out.progress)
        if out.json:
            out.emit(job)
            return EXIT_OK
        for key in ("id", "kind", "state", "queue", "device", "created_at", "finished_at"):
            out.line(f"{key + ':':13} {job.get(key) or '-'}")
        version = job.get("version") or {}
        if version:
            out.line(f"{'version:':13} {version.get('repo')}@{version.get('label')}")
        if job.get("error_code"):
            out.line(f"{'error:':13} {job['error_code']}: {job.get('error_message')}")
        if job.get("log_tail"):
            out.line("log:")
            for line in str(job["log_tail"]).splitlines()[-20:]:
                out.line(f"  {line}")
        return EXIT_OK
    jobs = client.jobs()
    if out.json:
        out.emit(jobs)
        return EXIT_OK
    rows = [
        (
            str(j["id"])[:8],
            j.get("kind"),
            j.get("state"),
            f"{j['version']['repo']}@{j['version']['label']}" if j.get("version") else "-",
            (j.get("created_at") or "")[:19].replace("T", " "),
            j.get("error_code") or "",
        )
        for j in jobs
    ]
    table(rows, ["JOB", "KIND", "STATE", "VERSION", "CREATED", "ERROR"], sys.stdout)
    return EXIT_OK


# --- parser ----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _common() -> _Parser:
    common = _Parser(add_help=False)
    s = argparse.SUPPRESS
    common.add_argument("--endpoint", default=s, help="hub URL (default: $STRATA_ENDPOINT)")
    common.add_argument("--json", action="store_true", default=s, help="machine-readable output")
    common.add_argument(
        "-q", "--quiet", action="store_true", default=s, help="no progress or notes"
    )
    common.add_argument(
        "--offline", action="store_true", default=s, help="serve from the cache only"
    )
    common.add_argument("-v", "--verbose", action="store_true", default=s, help="log requests")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(
        prog="strata",
        description="Pull and push LoRA adapters on a Strata hub.",
        parents=[common],
        epilog=(
            "Environment: STRATA_ENDPOINT, STRATA_TOKEN, STRATA_CACHE_DIR, STRATA_CONFIG_DIR, "
            "STRATA_OFFLINE. Exit codes: 0 ok, 1 error, 2 usage, 3 auth, 4 not found, "
            "5 validation failed, 6 network."
        ),
    )
    parser.add_argument("--version", action="version", version=f"strata-client {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name: str, fn: Callable[..., int], help: str, **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common], **kw)
        p.set_defaults(func=fn)
        return p

    p = add("login", cmd_login, "Store a token for the hub (checked with /whoami first).")
    p.add_argument("--token", help="the token; '-' reads it from stdin; prompts when omitted")
    p.add_argument(
        "--default", action="store_true", help="make this hub the default (the first one is)"
    )
    add("logout", cmd_logout, "Forget the stored token for the hub.")
    add("whoami", cmd_whoami, "Show who the token belongs to.")

    p = add("push", cmd_push, "Publish a folder as a new version (creates the repository).")
    p.add_argument("folder", help="folder to push, e.g. what save_pretrained wrote")
    p.add_argument("repo", help="NAMESPACE/NAME")
    p.add_argument("--kind", choices=KINDS, default="adapter", help="kind of a new repository")
    p.add_argument("--base", help="base model, NAMESPACE/NAME[@REV] (adapters)")
    p.add_argument("--base-revision", help="revision of --base")
    p.add_argument(
        "--parent",
        action="append",
        metavar="REPO@REV",
        help="adapter this one is stacked on; repeat in order",
    )
    p.add_argument("--finetuned-from", metavar="REPO@REV", help="adapter training started from")
    p.add_argument("--dataset", action="append", help="training dataset (hub ref or URI)")
    p.add_argument("--eval-set", action="append", help="evaluation dataset (hub ref or URI)")
    p.add_argument("-m", "--message", help="version message")
    p.add_argument("--training-params", help="JSON object, or @file.json")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--exclude", action="append", metavar="GLOB", help="leave matching files out")
    p.add_argument("--wait", action="store_true", help="wait for validation, print findings")
    p.add_argument("--timeout", type=float, help="seconds to wait at most")

    p = add("pull", cmd_pull, "Download a version into the cache (and a folder).")
    p.add_argument("ref", help="NAMESPACE/NAME[@REV] (default revision: main)")
    p.add_argument("-o", "--output", help="also lay the files out in this folder")
    p.add_argument("--merged", action="store_true", help="pull vN-merged (full weights)")
    p.add_argument("-y", "--yes", action="store_true", help="request a missing merge unasked")
    p.add_argument("--stack", action="store_true", help="every adapter of the stack + stack.json")
    p.add_argument("--include-base", action="store_true", help="with --stack: the base too")
    p.add_argument("--copy", action="store_true", help="copy files instead of hard links")
    p.add_argument("--timeout", type=float, help="seconds to wait for a requested merge")

    p = add("info", cmd_info, "Show a repository.")
    p.add_argument("repo", help="NAMESPACE/NAME")

    for name, help_text in (("ls", "List repositories."), ("search", "Search repositories.")):
        p = add(name, cmd_ls, help_text)
        if name == "search":
            p.add_argument("query", help="text to search in names and descriptions")
        p.add_argument("--kind", choices=KINDS)
        p.add_argument("--base", metavar="NAMESPACE/NAME", help="adapters of this base model")
        p.add_argument("--owner", help="namespace")
        p.add_argument("--tag")
        p.add_argument("--license")
        p.add_argument("--status", choices=("pending", "valid", "invalid"), help="of main")
        p.add_argument("--q", help="text search")
        p.add_argument("--sort", choices=SORTS)
        p.add_argument("--limit", type=int, default=50)

    p = add("versions", cmd_versions, "List the versions of a repository.")
    p.add_argument("repo")
    p = add("files", cmd_files, "List the files of a version.")
    p.add_argument("ref")
    p = add("lineage", cmd_lineage, "Show where a version comes from and what builds on it.")
    p.add_argument("ref")
    p.add_argument("--depth", type=int, default=8)

    p = add("merge", cmd_merge, "Ask the hub to merge a version into full weights (vN-merged).")
    p.add_argument("ref")
    p.add_argument("--dtype", choices=("f16", "bf16", "f32"), help="default: the base model's")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    p.add_argument("--timeout", type=float)

    p = add("compose", cmd_compose, "Combine adapters into a new adapter version.")
    p.add_argument("inputs", nargs="+", metavar="REF[:WEIGHT]")
    p.add_argument("--target", required=True, metavar="NAMESPACE/NAME")
    p.add_argument("--method", choices=("exact", "svd"), default="exact")
    p.add_argument("--rank", type=int, help="rank of the result (svd)")
    p.add_argument("-m", "--message")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--timeout", type=float)

    p = add("benchmark", cmd_benchmark, "Ask the hub to benchmark a version.")
    p.add_argument("ref")
    p.add_argument("--eval-set", action="append", help="evaluation set (repeatable)")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--timeout", type=float)

    p = add("jobs", cmd_jobs, "List your jobs, or show (and --wait for) one.")
    p.add_argument("job_id", nargs="?")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--timeout", type=float)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output(args)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    if out.quiet or out.json:
        logging.getLogger("strata").setLevel(logging.ERROR)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    try:
        code: int = args.func(args, out)
        return code
    except StrataError as exc:
        end_status(enabled=out.progress)
        if out.json:
            out.emit({"error": exc.to_json()})
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        end_status(enabled=out.progress)
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


def run() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
