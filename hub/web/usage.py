"""Copy-paste snippets for a version: the strata CLI, huggingface_hub, PEFT and vLLM."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from hub.registry.models import Repository, Version

#: vLLM serves LoRA ranks up to this without ``--max-lora-rank``.
VLLM_DEFAULT_MAX_LORA_RANK = 16


@dataclass(frozen=True)
class Snippet:
    key: str
    title: str
    language: str
    code: str
    note: str = ""


@dataclass(frozen=True)
class UsageContext:
    repo: Repository
    version: Version
    #: True when ``main`` points at this version (clients without a revision get it).
    is_main: bool
    weights: str | None
    base: Version | None = None
    base_architecture: str | None = None
    rank: int | None = None
    stacked_on: tuple[str, ...] = ()


def _endpoint() -> str:
    return str(settings.PUBLIC_BASE_URL)


def _auto_class(architecture: str | None) -> str:
    if architecture and architecture.endswith("ForCausalLM"):
        return "AutoModelForCausalLM"
    if architecture and architecture.endswith("ForSeq2SeqLM"):
        return "AutoModelForSeq2SeqLM"
    return "AutoModel"


def snippets(ctx: UsageContext) -> list[Snippet]:
    if ctx.repo.kind == Repository.Kind.ADAPTER:
        return _adapter(ctx)
    if ctx.repo.kind == Repository.Kind.BASE_MODEL:
        return _base(ctx)
    return _dataset(ctx)


def _cli(ctx: UsageContext, extra: str = "") -> Snippet:
    ref = f"{ctx.repo.full_name}@{ctx.version.label}"
    lines = [
        f"export STRATA_ENDPOINT={_endpoint()}",
        f"strata pull {ref} -o ./{ctx.repo.name}",
    ]
    if extra:
        lines.append(extra)
    return Snippet("cli", "Strata CLI", "shell", "\n".join(lines))


def _adapter(ctx: UsageContext) -> list[Snippet]:
    repo_id, rev = ctx.repo.full_name, ctx.version.label
    endpoint = f"{_endpoint()}/hf"
    stack_note = ""
    cli_extra = ""
    if ctx.stacked_on:
        stack_note = (
            f"# Stacked on {', '.join(ctx.stacked_on)}: apply those first, in order\n"
            "# (strata.load_peft does this for you).\n"
        )
        cli_extra = (
            f"strata pull {repo_id}@{rev} --stack -o ./{ctx.repo.name}-stack"
            "   # every adapter of the stack"
        )
    out = [_cli(ctx, cli_extra)]
    weights = ctx.weights or "adapter_model.safetensors"
    out.append(
        Snippet(
            "hf",
            "huggingface_hub",
            "python",
            f"# export HF_ENDPOINT={endpoint}   (before Python starts)\n"
            "from huggingface_hub import hf_hub_download\n\n"
            "path = hf_hub_download(\n"
            f'    repo_id="{repo_id}", filename="{weights}", revision="{rev}"\n'
            ")",
        )
    )
    base_line = "base = ...  # the base model this adapter was trained on"
    auto = "AutoModel"
    if ctx.base is not None:
        auto = _auto_class(ctx.base_architecture)
        base_line = (
            f'base = {auto}.from_pretrained("{ctx.base.repository.full_name}", '
            f'revision="{ctx.base.label}")'
        )
    out.append(
        Snippet(
            "peft",
            "PEFT",
            "python",
            f"# export HF_ENDPOINT={endpoint}\n"
            f"from transformers import {auto}\n"
            "from peft import PeftModel\n\n"
            f"{stack_note}{base_line}\n"
            f'model = PeftModel.from_pretrained(base, "{repo_id}", revision="{rev}")',
        )
    )
    base_arg = (
        f"{ctx.base.repository.full_name} --revision {ctx.base.label}"
        if ctx.base is not None
        else "<base-model>"
    )
    rank_flag = ""
    note = ""
    if ctx.rank is not None and ctx.rank > VLLM_DEFAULT_MAX_LORA_RANK:
        rank_flag = f" \\\n  --max-lora-rank {ctx.rank}"
    elif ctx.rank is None:
        note = (
            f"The rank is not known until validation finishes; vLLM needs --max-lora-rank "
            f"for ranks above {VLLM_DEFAULT_MAX_LORA_RANK}."
        )
    if ctx.is_main:
        code = (
            f"export HF_ENDPOINT={endpoint}\n"
            f"vllm serve {base_arg} --enable-lora \\\n"
            f"  --lora-modules {ctx.repo.name}={repo_id}{rank_flag}"
        )
    else:
        # vLLM fetches LoRA modules without a revision (it gets main): download this one.
        local = f"./{ctx.repo.name}-{rev}"
        code = (
            f"export HF_ENDPOINT={endpoint}\n"
            f"hf download {repo_id} --revision {rev} --local-dir {local}\n"
            f"vllm serve {base_arg} --enable-lora \\\n"
            f"  --lora-modules {ctx.repo.name}={local}{rank_flag}"
        )
        note = (note + " " if note else "") + (
            f"vLLM loads LoRA modules at their default revision, so {rev} (not main) is "
            "downloaded first."
        )
    if ctx.stacked_on:
        note = (note + " " if note else "") + (
            "vLLM serves one adapter at a time: serve the merged weights of a stack, or "
            "compose it into one adapter."
        )
    out.append(Snippet("vllm", "vLLM", "shell", code, note.strip()))
    return out


def _base(ctx: UsageContext) -> list[Snippet]:
    repo_id, rev = ctx.repo.full_name, ctx.version.label
    endpoint = f"{_endpoint()}/hf"
    auto = _auto_class(ctx.base_architecture)
    return [
        _cli(ctx),
        Snippet(
            "hf",
            "huggingface_hub",
            "python",
            f"# export HF_ENDPOINT={endpoint}   (before Python starts)\n"
            "from huggingface_hub import snapshot_download\n\n"
            f'folder = snapshot_download("{repo_id}", revision="{rev}")',
        ),
        Snippet(
            "transformers",
            "Transformers",
            "python",
            f"# export HF_ENDPOINT={endpoint}\n"
            f"from transformers import {auto}\n\n"
            f'model = {auto}.from_pretrained("{repo_id}", revision="{rev}")',
        ),
        Snippet(
            "vllm",
            "vLLM",
            "shell",
            f"export HF_ENDPOINT={endpoint}\nvllm serve {repo_id} --revision {rev} --enable-lora",
        ),
    ]


def _dataset(ctx: UsageContext) -> list[Snippet]:
    repo_id, rev = ctx.repo.full_name, ctx.version.label
    endpoint = f"{_endpoint()}/hf"
    filename = ctx.weights or "data.jsonl"
    return [
        _cli(ctx),
        Snippet(
            "hf",
            "huggingface_hub",
            "python",
            f"# export HF_ENDPOINT={endpoint}   (before Python starts)\n"
            "from huggingface_hub import hf_hub_download\n\n"
            "path = hf_hub_download(\n"
            f'    repo_id="{repo_id}", filename="{filename}", repo_type="dataset", '
            f'revision="{rev}"\n'
            ")",
        ),
    ]
