"""/v1/jobs/{id}/feedback: record feedback on a job (idempotent by its id) and list a
job's feedback."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from aijobs.feedback import service
from aijobs.feedback.schemas import Feedback, FeedbackCreate, FeedbackList
from api.deps import SessionDep, TenantDep

router = APIRouter(prefix="/v1/jobs", tags=["feedback"])


@router.post(
    "/{job_id}/feedback",
    status_code=201,
    response_model=None,
    responses={
        201: {"model": Feedback, "description": "recorded"},
        200: {"model": Feedback, "description": "this id was recorded before: as stored"},
    },
)
def create_feedback(
    job_id: str, body: FeedbackCreate, tenant: TenantDep, session: SessionDep
) -> JSONResponse:
    recorded = service.create(session, tenant.id, job_id, body)
    return JSONResponse(recorded.feedback, status_code=201 if recorded.created else 200)


# The objects are JSON-ready already (times as the job object writes them): sent as they
# are, the models only document them.
@router.get("/{job_id}/feedback", response_model=None, responses={200: {"model": FeedbackList}})
def list_feedback(job_id: str, tenant: TenantDep, session: SessionDep) -> JSONResponse:
    """The job's feedback, oldest first (all of it: a job holds at most 1,000)."""
    return JSONResponse({"data": service.list_for_job(session, tenant.id, job_id)})
