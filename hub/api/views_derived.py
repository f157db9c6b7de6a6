"""REST endpoints that request derived artifacts: merges and compositions."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hub.api.common import actor_of
from hub.api.serializers import JobSerializer, version_ref
from hub.registry import derived
from hub.registry.access import repository_for
from hub.registry.lineage import Ref
from hub.registry.selectors import version_for


class MergeSerializer(serializers.Serializer[Any]):
    dtype = serializers.ChoiceField(choices=derived.MERGE_DTYPES, required=False, allow_null=True)


class ComposeInputSerializer(serializers.Serializer[Any]):
    repo = serializers.CharField(max_length=200)
    revision = serializers.CharField(max_length=100, required=False, allow_blank=True)
    weight = serializers.FloatField(default=1.0)


class ComposeSerializer(serializers.Serializer[Any]):
    inputs = ComposeInputSerializer(many=True)
    method = serializers.ChoiceField(choices=["exact", "svd"], default="exact")
    rank = serializers.IntegerField(min_value=1, max_value=4096, required=False, allow_null=True)
    target = serializers.CharField(max_length=200, help_text="namespace/name of an adapter repo")
    message = serializers.CharField(max_length=5000, required=False, allow_blank=True)


class MergeView(APIView):
    @extend_schema(
        request=MergeSerializer,
        responses={200: OpenApiTypes.OBJECT, 202: OpenApiTypes.OBJECT},
        description=(
            "Request the pre-merged weights of an adapter version (base + whole stack). "
            "Answers 200 with the `vN-merged` version when it exists, else 202 with the job "
            "(the same job for identical requests)."
        ),
    )
    def post(self, request: Request, namespace: str, name: str, revision: str) -> Response:
        actor = actor_of(request)
        repo = repository_for(actor, namespace, name)
        version = version_for(actor, repo, revision)
        data = MergeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        outcome = derived.merge_request(
            actor=actor if actor.user else None,
            version=version,
            dtype=data.validated_data.get("dtype"),
        )
        if outcome.merged is not None:
            return Response({"version": version_ref(outcome.merged), "job": None})
        assert outcome.job is not None
        return Response(
            {"version": None, "job": JobSerializer(outcome.job).data},
            status=status.HTTP_202_ACCEPTED,
        )


class ComposeView(APIView):
    @extend_schema(
        request=ComposeSerializer,
        responses={202: OpenApiTypes.OBJECT},
        description=(
            "Compose adapters sharing a base into one adapter: `exact` concatenates ranks "
            "(identical delta), `svd` compresses to `rank` and reports the error. The result "
            "is published as a new version of `target` with `composed_from` lineage."
        ),
    )
    def post(self, request: Request) -> Response:
        actor = actor_of(request)
        data = ComposeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        job = derived.compose_request(
            actor=actor,
            inputs=[
                derived.ComposeInput(
                    Ref.parse(f"{i['repo']}@{i['revision']}" if i.get("revision") else i["repo"]),
                    i["weight"],
                )
                for i in v["inputs"]
            ],
            method=v["method"],
            rank=v.get("rank"),
            target=v["target"],
            message=v.get("message") or "",
        )
        return Response({"job": JobSerializer(job).data}, status=status.HTTP_202_ACCEPTED)
