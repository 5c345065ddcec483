//! Routes and handlers of the JSON API.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router, middleware};
use proto::admin::{LogOffsets, LogsRequest, TaskOutput};
use proto::operator::{
    JOB_REQUEST_BYTES_MAX, JobAccepted, JobRequest, OperatorError, OperatorReply, OperatorRequest,
};
use proto::{Principal, TaskId, TaskState};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, WatchStream};
use tokio_stream::{Stream, StreamExt};
use utoipa::{IntoParams, OpenApi};

use crate::auth::{self, Caller};
use crate::command::Command;
use crate::error::{ApiError, ErrorBody};
use crate::state::{AgentRow, ClusterState, FrameworkRow, LogTail, OfferRow, TaskDetail, TaskRow};
use crate::{Handles, LOG_FOLLOWS_MAX};

/// Largest request body taken; a larger one is answered 413 `body_too_large`. The only
/// body taken is a job, so this is the operator's one limit for jobs.
pub const BODY_BYTES_MAX: usize = JOB_REQUEST_BYTES_MAX;
/// How long a handler waits for the daemon to answer a command before answering 503.
pub const COMMAND_TIMEOUT_MS: u64 = 5_000;
/// How often a followed task's output is asked for.
pub const LOG_FOLLOW_POLL_MS: u64 = 500;
/// How long a follow keeps asking while the task's agent does not answer.
pub const LOG_FOLLOW_UNANSWERED_MAX_MS: u64 = 60_000;
/// Chunks of a followed task's output queued for a slow reader before the follow waits.
const LOG_FOLLOW_CHUNKS_QUEUED: usize = 4;
/// Between SSE keep-alive comments, so proxies keep an idle stream open.
const SSE_KEEP_ALIVE_MS: u64 = 15_000;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wasmos master API",
        description = "Agents, frameworks, tasks, offers and DRF shares of a wasmos cluster; jobs for the jobs framework: submitted once, or declared and rolled out."
    ),
    paths(
        health,
        state,
        agents,
        frameworks,
        tasks,
        task,
        task_logs,
        kill_task,
        submit_job,
        events,
        metrics,
        offers,
        crate::jobs_api::list,
        crate::jobs_api::status,
        crate::jobs_api::history,
        crate::jobs_api::deploy,
        crate::jobs_api::promote,
        crate::jobs_api::revert,
        crate::jobs_api::stop,
        crate::jobs_api::explain
    ),
    components(schemas(ErrorBody, JobRequest, JobAccepted, TaskDetail, LogTail))
)]
pub struct ApiDoc;

/// The dashboard's own files and `/health` are open: they hold no cluster data, and the
/// page must load before it can ask for a token (a browser sends no bearer header when it
/// navigates). Everything else, `/metrics` and unknown routes included, goes through
/// [`auth::authenticate`].
pub fn router(handles: Handles) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/state", get(state))
        .route("/api/v1/agents", get(agents))
        .route("/api/v1/frameworks", get(frameworks))
        .route("/api/v1/offers", get(offers))
        .route("/api/v1/tasks", get(tasks))
        .route("/api/v1/tasks/{id}", get(task).delete(kill_task))
        .route("/api/v1/tasks/{id}/logs", get(task_logs))
        .route("/api/v1/jobs", get(crate::jobs_api::list).post(submit_job))
        .merge(crate::jobs_api::routes())
        .route("/api/v1/events", get(events))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            handles.clone(),
            auth::authenticate,
        ));
    let open = Router::new()
        .route("/", get(crate::dashboard::index))
        .route("/assets/app.js", get(crate::dashboard::script))
        .route("/assets/app.css", get(crate::dashboard::style))
        .route("/health", get(health))
        .method_not_allowed_fallback(method_not_allowed);
    guarded
        .merge(open)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(handles)
}

fn current(handles: &Handles) -> Arc<ClusterState> {
    handles.state.borrow().clone()
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct Health {
    status: &'static str,
}

/// Liveness: the HTTP server answers.
#[utoipa::path(get, path = "/health", responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The whole cluster: agents, frameworks with DRF shares, tasks, offers, log, counters.
#[utoipa::path(get, path = "/api/v1/state", responses((status = 200, body = ClusterState)))]
async fn state(State(h): State<Handles>) -> Json<ClusterState> {
    Json(ClusterState::clone(&current(&h)))
}

#[utoipa::path(get, path = "/api/v1/agents", responses((status = 200, body = Vec<AgentRow>)))]
async fn agents(State(h): State<Handles>) -> Json<Vec<AgentRow>> {
    Json(current(&h).agents.clone())
}

#[utoipa::path(get, path = "/api/v1/frameworks", responses((status = 200, body = Vec<FrameworkRow>)))]
async fn frameworks(State(h): State<Handles>) -> Json<Vec<FrameworkRow>> {
    Json(current(&h).frameworks.clone())
}

/// Outstanding offers; their times are on the master's clock (see `master_now_ms` in
/// `/api/v1/state`).
#[utoipa::path(get, path = "/api/v1/offers", responses((status = 200, body = Vec<OfferRow>)))]
async fn offers(State(h): State<Handles>) -> Json<Vec<OfferRow>> {
    Json(current(&h).offers.clone())
}

/// Filters of `GET /api/v1/tasks`; each given one must match.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TaskFilter {
    /// A task state (`running`, `finished`, ...; see the `TaskState` schema).
    pub state: Option<String>,
    pub framework: Option<String>,
    pub agent: Option<String>,
}

impl TaskFilter {
    fn matcher(&self) -> Result<impl Fn(&TaskRow) -> bool + '_, ApiError> {
        let state = match self.state.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(TaskState::parse(s).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    format!("unknown task state {s:?}"),
                )
            })?),
            None => None,
        };
        let empty_is_none = |o: &Option<String>| o.clone().filter(|s| !s.is_empty());
        let (framework, agent) = (empty_is_none(&self.framework), empty_is_none(&self.agent));
        Ok(move |t: &TaskRow| {
            state.is_none_or(|s| t.state == s)
                && framework
                    .as_deref()
                    .is_none_or(|f| t.framework_id.as_str() == f)
                && agent.as_deref().is_none_or(|a| t.agent_id.as_str() == a)
        })
    }
}

#[utoipa::path(
    get, path = "/api/v1/tasks", params(TaskFilter),
    responses((status = 200, body = Vec<TaskRow>), (status = 400, body = ErrorBody))
)]
async fn tasks(
    State(h): State<Handles>,
    query: Result<Query<TaskFilter>, QueryRejection>,
) -> Result<Json<Vec<TaskRow>>, ApiError> {
    let Query(filter) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let matches = filter.matcher()?;
    Ok(Json(
        current(&h)
            .tasks
            .iter()
            .filter(|t| matches(t))
            .cloned()
            .collect(),
    ))
}

fn task_id(path: Result<Path<String>, PathRejection>) -> Result<TaskId, ApiError> {
    path_text(path).map(TaskId::new)
}

/// The one text a route's path holds (a task id, a job name); a bad one is 400.
pub(crate) fn path_text(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(text) =
        path.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", e.body_text()))?;
    Ok(text)
}

fn task_not_found(id: &TaskId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "task_not_found",
        format!("no task {id}"),
    )
}

/// One task with the tail of its output (asked of its agent through the daemon; when that
/// fails, `log_tail` is null and `log_error` says why).
#[utoipa::path(
    get, path = "/api/v1/tasks/{id}", params(("id" = String, Path, description = "task id")),
    responses((status = 200, body = TaskDetail), (status = 404, body = ErrorBody))
)]
async fn task(
    State(h): State<Handles>,
    Caller(caller): Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<TaskDetail>, ApiError> {
    let id = task_id(path)?;
    // From the core's books, not the snapshot: it lists only the 200 most recently ended.
    let asked = OperatorRequest::TaskRows {
        task_ids: vec![id.clone()],
    };
    let task = match ask(&h, &caller, asked).await? {
        OperatorReply::Tasks(rows) => rows.into_iter().next(),
        other => return Err(unexpected(&other)),
    };
    let task = task.ok_or_else(|| task_not_found(&id))?;
    let logs = ask(&h, &caller, logs_request(&id, None)).await;
    let (log_tail, log_error) = match logs {
        Ok(OperatorReply::Logs(output)) => {
            let (stdout, stderr) = (&output.stdout, &output.stderr);
            let dropped = stdout.dropped_since(0) + stderr.dropped_since(0);
            let tail = LogTail::of_output(&stdout.text_since(0), &stderr.text_since(0), dropped);
            (Some(tail), None)
        }
        Ok(other) => (None, Some(unexpected(&other).message)),
        Err(e) => (None, Some(e.message)),
    };
    Ok(Json(TaskDetail {
        task,
        log_tail,
        log_error,
    }))
}

fn logs_request(task_id: &TaskId, from: Option<LogOffsets>) -> OperatorRequest {
    OperatorRequest::Logs(LogsRequest {
        task_id: task_id.clone(),
        from,
    })
}

/// Query of `GET /api/v1/tasks/{id}/logs`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Keep the response open and send what the task writes until it ends.
    #[serde(default)]
    pub follow: bool,
    /// Start with only the last N lines of each stream.
    pub tail: Option<usize>,
    /// `stdout`, `stderr`, or `all` (the default: stdout, then stderr, in each read).
    pub stream: Option<String>,
}

/// Which of a task's streams a reader wants.
#[derive(Clone, Copy, Debug)]
struct Streams {
    stdout: bool,
    stderr: bool,
}

impl Streams {
    fn parse(s: Option<&str>) -> Result<Streams, ApiError> {
        let (stdout, stderr) = match s.unwrap_or("all") {
            "all" | "" => (true, true),
            "stdout" => (true, false),
            "stderr" => (false, true),
            other => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    format!("unknown stream {other:?}: give stdout, stderr or all"),
                ));
            }
        };
        Ok(Streams { stdout, stderr })
    }

    /// The text of one read: from `from` on (gaps said in line), or the last `tail` lines.
    fn text(self, output: &TaskOutput, from: LogOffsets, tail: Option<usize>) -> Vec<u8> {
        let mut out = Vec::new();
        if self.stdout {
            out.extend(output.stdout.text(from.stdout, tail));
        }
        if self.stderr {
            out.extend(output.stderr.text(from.stderr, tail));
        }
        out
    }
}

/// What a task wrote, running or ended, as text: stdout then stderr (or the one asked
/// for). With `follow=true` the response stays open and carries what the task writes
/// until it ends; a pending task is waited for.
#[utoipa::path(
    get, path = "/api/v1/tasks/{id}/logs",
    params(("id" = String, Path, description = "task id"), LogsQuery),
    responses(
        (status = 200, content_type = "text/plain", description = "the task's output"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)
    )
)]
async fn task_logs(
    State(h): State<Handles>,
    Caller(caller): Caller,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id = task_id(path)?;
    let Query(query) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let streams = Streams::parse(query.stream.as_deref())?;
    let output = match ask(&h, &caller, logs_request(&id, None)).await? {
        OperatorReply::Logs(output) => output,
        other => return Err(unexpected(&other)),
    };
    let first = streams.text(&output, LogOffsets::default(), query.tail);
    let body = if query.follow && !output.state.is_terminal() {
        let permit = h.follows.clone().try_acquire_owned().map_err(|_| {
            ApiError::unavailable(format!(
                "{LOG_FOLLOWS_MAX} task logs are followed already; try again later, or without follow"
            ))
        })?;
        let (tx, rx) = mpsc::channel(LOG_FOLLOW_CHUNKS_QUEUED);
        let _ = tx.try_send(Ok(Bytes::from(first)));
        tokio::spawn(async move {
            follow_logs(&h, &caller, &id, streams, output.ends(), &tx).await;
            drop(permit);
        });
        axum::body::Body::from_stream(ReceiverStream::new(rx))
    } else {
        axum::body::Body::from(first)
    };
    let headers = [
        (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    Ok((headers, body).into_response())
}

/// Sends what the task writes from `from` on until it ends, the reader goes, or nobody
/// has answered for [`LOG_FOLLOW_UNANSWERED_MAX_MS`] (said at the end of the text).
async fn follow_logs(
    h: &Handles,
    caller: &Principal,
    id: &TaskId,
    streams: Streams,
    mut from: LogOffsets,
    tx: &mpsc::Sender<Result<Bytes, Infallible>>,
) {
    let mut unanswered_since: Option<tokio::time::Instant> = None;
    let stopped = |why: &str| {
        Ok(Bytes::from(format!(
            "\n[... following stopped: {why} ...]\n"
        )))
    };
    let mut pause = true;
    loop {
        if pause {
            tokio::time::sleep(Duration::from_millis(LOG_FOLLOW_POLL_MS)).await;
        }
        if tx.is_closed() {
            return;
        }
        let output = match ask(h, caller, logs_request(id, Some(from))).await {
            Ok(OperatorReply::Logs(output)) => output,
            Ok(other) => {
                let _ = tx.send(stopped(&unexpected(&other).message)).await;
                return;
            }
            // Gone from the master (cancelled while pending, or forgotten): it ends here.
            Err(e) if e.status == StatusCode::NOT_FOUND => {
                let _ = tx.send(stopped(&e.message)).await;
                return;
            }
            Err(e) => {
                let since = *unanswered_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= Duration::from_millis(LOG_FOLLOW_UNANSWERED_MAX_MS) {
                    let _ = tx.send(stopped(&e.message)).await;
                    return;
                }
                pause = true;
                continue;
            }
        };
        unanswered_since = None;
        let text = streams.text(&output, from, None);
        from = output.ends();
        if !text.is_empty() && tx.send(Ok(Bytes::from(text))).await.is_err() {
            return;
        }
        if output.state.is_terminal() {
            return;
        }
        pause = !output.is_cut_short();
    }
}

/// Kills a task as the operator (a task of the jobs framework not launched yet is
/// cancelled). 202: the kill was sent; the task's state tells when it ended.
#[utoipa::path(
    delete, path = "/api/v1/tasks/{id}", params(("id" = String, Path, description = "task id")),
    responses((status = 202), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
async fn kill_task(
    State(h): State<Handles>,
    Caller(caller): Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = task_id(path)?;
    match ask(&h, &caller, OperatorRequest::Kill { task_id: id }).await? {
        OperatorReply::Killed => Ok(StatusCode::ACCEPTED),
        other => Err(unexpected(&other)),
    }
}

/// Submits a job to the jobs framework.
#[utoipa::path(
    post, path = "/api/v1/jobs", request_body = JobRequest,
    responses(
        (status = 201, body = JobAccepted),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 413, description = "body larger than 64 KiB", body = ErrorBody),
        (status = 422, description = "a field is missing, of the wrong type or out of range", body = ErrorBody),
        (status = 409, body = ErrorBody)
    )
)]
async fn submit_job(
    State(h): State<Handles>,
    Caller(caller): Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<JobAccepted>), ApiError> {
    let request: JobRequest = serde_json::from_slice(&body_bytes(body)?).map_err(json_error)?;
    match ask(&h, &caller, OperatorRequest::SubmitJob(request)).await? {
        OperatorReply::JobAccepted(accepted) => Ok((StatusCode::CREATED, Json(accepted))),
        other => Err(unexpected(&other)),
    }
}

/// A request's body; one too large is 413.
pub(crate) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request bodies are limited to {BODY_BYTES_MAX} bytes"),
        ),
        _ => ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.body_text()),
    })
}

/// Syntax errors are 400; well-formed JSON of the wrong shape is 422.
pub(crate) fn json_error(e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_job",
            e.to_string(),
        ),
        Category::Io | Category::Syntax | Category::Eof => {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.to_string())
        }
    }
}

/// Sends a request of `caller` to the daemon and waits (bounded) for its answer; its
/// refusals are errors here.
pub(crate) async fn ask(
    h: &Handles,
    caller: &Principal,
    request: OperatorRequest,
) -> Result<OperatorReply, ApiError> {
    let (reply, answer) = oneshot::channel();
    let gone = || ApiError::unavailable("the master daemon is not answering");
    let command = Command {
        request,
        caller: caller.clone(),
        reply,
    };
    h.commands.send(command).await.map_err(|_| gone())?;
    let answered = tokio::time::timeout(Duration::from_millis(COMMAND_TIMEOUT_MS), answer).await;
    match answered {
        Ok(Ok(OperatorReply::Error(e))) => Err(refusal(e)),
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(_)) | Err(_) => Err(gone()),
    }
}

fn refusal(e: OperatorError) -> ApiError {
    match e {
        OperatorError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "task_not_found", m),
        OperatorError::Conflict(m) | OperatorError::JobsNotRunning(m) => {
            ApiError::new(StatusCode::CONFLICT, "conflict", m)
        }
        OperatorError::InvalidJob(m) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_job", m)
        }
        OperatorError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
        OperatorError::BadRequest(m) => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m),
    }
}

/// The daemon answered another question than the one asked.
pub(crate) fn unexpected(reply: &OperatorReply) -> ApiError {
    tracing::error!(?reply, "the master daemon answered another question");
    ApiError::unavailable("the master daemon gave an answer that does not fit")
}

/// Server-sent events: one `state` event with the whole [`ClusterState`] at once, then
/// one each time the daemon publishes a new snapshot. A slow client skips snapshots
/// rather than queueing them.
#[utoipa::path(get, path = "/api/v1/events", responses((status = 200, content_type = "text/event-stream", description = "`event: state`, `data:` a ClusterState as JSON")))]
async fn events(State(h): State<Handles>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = WatchStream::new(h.state.clone()).map(|state| {
        let event = Event::default().event("state");
        Ok(match serde_json::to_string(&*state) {
            Ok(json) => event.data(json),
            Err(e) => event.event("error").data(e.to_string()),
        })
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_millis(SSE_KEEP_ALIVE_MS)))
}

/// Prometheus text exposition format 0.0.4.
#[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "text/plain; version=0.0.4")))]
async fn metrics(State(h): State<Handles>) -> Response {
    let text = crate::metrics::render(&current(&h));
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}
