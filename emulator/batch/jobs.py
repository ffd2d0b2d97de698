"""Batch data-plane jobs, only as far as a pool's retirement needs them: add, list (with $filter/$select), terminate.

Source: Batch REST reference "Job - Add" (POST /jobs, 201, ``poolInfo.poolId``), "Job - List" (GET /jobs, OData
``$filter``/``$select``, ``state`` active|disabling|disabled|enabling|terminating|completed|deleting) and
"Job - Terminate" (POST /jobs/{jobId}/terminate, 202; the job goes through terminating to completed).
Tasks are not modelled; a job's tasks stay queued while its pool has no nodes (Learn "Jobs and tasks").
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from emulator.batch.exceptions import (
    JobExists,
    JobNotFound,
    MissingRequiredProperty,
)
from emulator.batch.formats import iso, make_etag
from emulator.core import Request, Response

if TYPE_CHECKING:
    from emulator.batch.data_responses import BatchDataResponses


@dataclass
class Job:
    id: str
    pool_id: str | None
    created: datetime
    state: str = "active"
    etag: str = ""

    def to_json(self, base: str, account: str) -> dict[str, Any]:
        return {"id": self.id, "url": f"{base}/batch/{account}/jobs/{self.id}", "eTag": self.etag,
                "creationTime": iso(self.created), "lastModified": iso(self.created), "state": self.state,
                "poolInfo": {"poolId": self.pool_id} if self.pool_id else {}}


class JobStore:
    """Jobs per account (lower-case account name -> lower-case job id -> job)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, dict[str, Job]] = {}

    def add(self, account: str, job: Job) -> None:
        with self._lock:
            jobs = self._jobs.setdefault(account.lower(), {})
            if job.id.lower() in jobs:
                # Job - Add: an existing id is refused with 409 JobExists.
                raise JobExists(plane="batch")
            jobs[job.id.lower()] = job

    def list(self, account: str) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.get(account.lower(), {}).values(), key=lambda j: j.id.lower())

    def get(self, account: str, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(account.lower(), {}).get(job_id.lower())
        if job is None:
            raise JobNotFound(plane="batch")
        return job

    def terminate(self, account: str, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(account.lower(), {}).get(job_id.lower())
            if job is None:
                raise JobNotFound(plane="batch")
            job.state = "completed"  # terminating is passed at once: no tasks run in the emulator
            return job


STORE_ATTR = "_jobs_store"


def store_of(responses: BatchDataResponses) -> JobStore:
    backend = responses.backend
    store = getattr(backend, STORE_ATTR, None)
    if store is None:
        store = JobStore()
        setattr(backend, STORE_ATTR, store)
    return store


def add_job(responses: BatchDataResponses, request: Request) -> Response:
    account = responses._account(request)
    body = request.json() or {}
    job_id = body.get("id")
    if not isinstance(job_id, str) or not job_id:
        raise MissingRequiredProperty("A required property was not specified in the request body.",
                                      values={"PropertyName": "id"}, plane="batch")
    pool_id = (body.get("poolInfo") or {}).get("poolId")
    now = responses.emulator.now()
    job = Job(job_id, pool_id if isinstance(pool_id, str) else None, now,
              etag=make_etag(now, len(store_of(responses).list(account.name)) + 1))
    store_of(responses).add(account.name, job)
    return responses._json(request, None, 201,
                           {"DataServiceId": f"{responses._base(request)}/batch/{account.name}/jobs/{job_id}"})


def list_jobs(responses: BatchDataResponses, request: Request) -> Response:
    account = responses._account(request)
    _text, predicate = responses._filter(request)
    base = responses._base(request)
    items = [j.to_json(base, account.name) for j in store_of(responses).list(account.name)]
    if predicate is not None:
        items = [i for i in items if predicate(i)]
    select = [s.strip() for s in (request.query.get("$select") or "").split(",") if s.strip()]
    if select:
        items = [{k: v for k, v in i.items() if k in select} for i in items]
    return responses._json(request, {"odata.metadata": f"{base}/batch/{account.name}/$metadata#jobs", "value": items})


def terminate_job(responses: BatchDataResponses, request: Request) -> Response:
    account = responses._account(request)
    store_of(responses).terminate(account.name, request.params["jobId"])
    return responses._json(request, None, 202)


def get_job(responses: BatchDataResponses, request: Request) -> Response:
    """Job - Get (GET /jobs/{jobId}); the SDK's terminate poller reads it until the job is completed."""
    account = responses._account(request)
    job = store_of(responses).get(account.name, request.params["jobId"])
    return responses._json(request, job.to_json(responses._base(request), account.name), 200, {"ETag": job.etag})
