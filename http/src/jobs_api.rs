//! Declared jobs over HTTP, the same requests as `wasmos deploy` and `wasmos job …`
//! (`proto::declared`): `GET /api/v1/jobs` (summaries), `PUT /api/v1/jobs/{name}` (deploy
//! a [`JobDecl`], its module a sha256 already in the store), `GET /api/v1/jobs/{name}`
//! (status), `GET …/history`, `POST …/promote`, `POST …/revert[?to=N]`, `POST …/stop`.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use proto::declared::{
    DeployChange, Deployed, HistoryEntry, JobDecl, JobStatus, JobSummary, JobsReply, JobsRequest,
};
use proto::explain::Explanation;
use proto::operator::{OperatorReply, OperatorRequest};
use serde::Deserialize;

use crate::Handles;
use crate::api::{ask, body_bytes, json_error, path_text, unexpected};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

/// The routes, to merge into the guarded router.
pub(crate) fn routes() -> Router<Handles> {
    Router::new()
        .route("/api/v1/jobs/{name}", get(status).put(deploy))
        .route("/api/v1/jobs/{name}/history", get(history))
        .route("/api/v1/jobs/{name}/promote", post(promote))
        .route("/api/v1/jobs/{name}/revert", post(revert))
        .route("/api/v1/jobs/{name}/stop", post(stop))
        .route("/api/v1/explain/{subject}", get(explain))
}

/// Why a task, or a declared job's copies, are not running (`wasmos explain`).
#[utoipa::path(
    get, path = "/api/v1/explain/{subject}",
    params(("subject" = String, Path, description = "a task id or a job name")),
    responses((status = 200, body = Explanation), (status = 404, body = ErrorBody))
)]
pub(crate) async fn explain(
    State(h): State<Handles>,
    Caller(caller): Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Explanation>, ApiError> {
    let subject = path_text(path)?;
    match ask(&h, &caller, OperatorRequest::Explain { subject }).await {
        Ok(OperatorReply::Explain(e)) => Ok(Json(*e)),
        Ok(other) => Err(unexpected(&other)),
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", e.message))
        }
        Err(e) => Err(e),
    }
}

/// Asks about declared jobs; a missing job is `404 job_not_found`.
async fn ask_jobs(
    h: &Handles,
    caller: &Caller,
    request: JobsRequest,
) -> Result<JobsReply, ApiError> {
    match ask(h, &caller.0, OperatorRequest::Jobs(request)).await {
        Ok(OperatorReply::Jobs(reply)) => Ok(reply),
        Ok(other) => Err(unexpected(&other)),
        Err(e) if e.status == StatusCode::NOT_FOUND => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "job_not_found",
            e.message,
        )),
        Err(e) => Err(e),
    }
}

/// The declared jobs, a summary each.
#[utoipa::path(get, path = "/api/v1/jobs", responses((status = 200, body = Vec<JobSummary>)))]
pub(crate) async fn list(
    State(h): State<Handles>,
    caller: Caller,
) -> Result<Json<Vec<JobSummary>>, ApiError> {
    match ask_jobs(&h, &caller, JobsRequest::List).await? {
        JobsReply::List(rows) => Ok(Json(rows)),
        other => Err(unexpected(&OperatorReply::Jobs(other))),
    }
}

/// A declared job: its versions, copies and rollout.
#[utoipa::path(
    get, path = "/api/v1/jobs/{name}", params(("name" = String, Path, description = "job name")),
    responses((status = 200, body = JobStatus), (status = 404, body = ErrorBody))
)]
pub(crate) async fn status(
    State(h): State<Handles>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<JobStatus>, ApiError> {
    match ask_jobs(
        &h,
        &caller,
        JobsRequest::Status {
            name: path_text(path)?,
        },
    )
    .await?
    {
        JobsReply::Status(status) => Ok(Json(*status)),
        other => Err(unexpected(&OperatorReply::Jobs(other))),
    }
}

/// What happened to a declared job, oldest first.
#[utoipa::path(
    get, path = "/api/v1/jobs/{name}/history", params(("name" = String, Path, description = "job name")),
    responses((status = 200, body = Vec<HistoryEntry>), (status = 404, body = ErrorBody))
)]
pub(crate) async fn history(
    State(h): State<Handles>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    match ask_jobs(
        &h,
        &caller,
        JobsRequest::History {
            name: path_text(path)?,
        },
    )
    .await?
    {
        JobsReply::History(entries) => Ok(Json(entries)),
        other => Err(unexpected(&OperatorReply::Jobs(other))),
    }
}

/// Creates (201) or updates (200) the job; `change` says what the deploy did. The name in
/// the path must be the body's; its module a sha256 already in the store.
#[utoipa::path(
    put, path = "/api/v1/jobs/{name}", params(("name" = String, Path, description = "job name")),
    request_body = JobDecl,
    responses(
        (status = 201, body = Deployed), (status = 200, body = Deployed),
        (status = 422, body = ErrorBody), (status = 409, body = ErrorBody)
    )
)]
pub(crate) async fn deploy(
    State(h): State<Handles>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Deployed>), ApiError> {
    let name = path_text(path)?;
    let decl: JobDecl = serde_json::from_slice(&body_bytes(body)?).map_err(json_error)?;
    if decl.name != name {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_job",
            format!(
                "the body declares job {:?}, the path names {name:?}",
                decl.name
            ),
        ));
    }
    match ask_jobs(&h, &caller, JobsRequest::Deploy(Box::new(decl))).await? {
        JobsReply::Deployed(d) if d.change == DeployChange::Created => {
            Ok((StatusCode::CREATED, Json(d)))
        }
        JobsReply::Deployed(d) => Ok((StatusCode::OK, Json(d))),
        other => Err(unexpected(&OperatorReply::Jobs(other))),
    }
}

#[derive(Deserialize)]
pub(crate) struct RevertQuery {
    to: Option<u32>,
}

#[derive(serde::Serialize)]
pub(crate) struct Done {
    message: String,
}

async fn done(h: &Handles, caller: &Caller, request: JobsRequest) -> Result<Json<Done>, ApiError> {
    match ask_jobs(h, caller, request).await? {
        JobsReply::Done(message) => Ok(Json(Done { message })),
        other => Err(unexpected(&OperatorReply::Jobs(other))),
    }
}

/// Promotes a rollout's healthy canaries.
#[utoipa::path(
    post, path = "/api/v1/jobs/{name}/promote", params(("name" = String, Path, description = "job name")),
    responses((status = 200), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub(crate) async fn promote(
    State(h): State<Handles>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Done>, ApiError> {
    done(
        &h,
        &caller,
        JobsRequest::Promote {
            name: path_text(path)?,
        },
    )
    .await
}

/// Rolls back to version `to`, or to the last healthy version before the current one.
#[utoipa::path(
    post, path = "/api/v1/jobs/{name}/revert",
    params(("name" = String, Path, description = "job name"), ("to" = Option<u32>, Query, description = "version")),
    responses((status = 200), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub(crate) async fn revert(
    State(h): State<Handles>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<RevertQuery>, QueryRejection>,
) -> Result<Json<Done>, ApiError> {
    let Query(RevertQuery { to }) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    done(
        &h,
        &caller,
        JobsRequest::Revert {
            name: path_text(path)?,
            to,
        },
    )
    .await
}

/// Stops every copy; the job stays, stopped.
#[utoipa::path(
    post, path = "/api/v1/jobs/{name}/stop", params(("name" = String, Path, description = "job name")),
    responses((status = 200), (status = 404, body = ErrorBody))
)]
pub(crate) async fn stop(
    State(h): State<Handles>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Done>, ApiError> {
    done(
        &h,
        &caller,
        JobsRequest::Stop {
            name: path_text(path)?,
        },
    )
    .await
}
