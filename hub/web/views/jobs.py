"""Jobs: one page per job, and the signed-in user's recent jobs."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from hub.registry.selectors import jobs_of_user, jobs_visible_to
from hub.web.views.common import actor_of, not_found, paginate

PER_PAGE = 50


@login_required
def job_list(request: HttpRequest) -> HttpResponse:
    actor = actor_of(request)
    jobs = jobs_of_user(actor).defer("log_tail", "result")  # the list shows neither
    state = request.GET.get("state")
    if state:
        jobs = jobs.filter(state=state)
    page = paginate(request, jobs, PER_PAGE)
    return render(request, "web/jobs.html", {"page": page, "state": state or ""})


def job_detail(request: HttpRequest, job_id: str) -> HttpResponse:
    actor = actor_of(request)
    job = jobs_visible_to(actor).filter(pk=job_id).first()
    if job is None:
        return not_found(request, "There is no such job, or you cannot see it.")
    duration = None
    if job.started_at and job.finished_at:
        duration = (job.finished_at - job.started_at).total_seconds()
    waited = None
    if job.started_at:
        waited = (job.started_at - job.created_at).total_seconds()
    return render(
        request,
        "web/job.html",
        {
            "job": job,
            "duration": duration,
            "waited": waited,
            "result_json": json.dumps(job.result, indent=2, sort_keys=True)
            if job.result is not None
            else "",
            "params_json": json.dumps(job.params, indent=2, sort_keys=True) if job.params else "",
        },
    )
