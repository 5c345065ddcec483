//! Who is calling: the bearer token of every request but `/health` and the dashboard's
//! own files, checked against the cluster's [`LiveTokenBook`].
//!
//! - No token book: every caller is [`Principal::anonymous`], as before security existed.
//! - With one: no `Authorization: Bearer TOKEN`, a malformed one or an unknown token is
//!   401 `unauthorized` (with `WWW-Authenticate: Bearer`); a viewer's request with any
//!   method but GET and HEAD is 403 `forbidden`, before it reaches a handler.
//!
//! The caller is attached to the request; handlers take it as [`Caller`] and send it to
//! the daemon with every [`crate::Command`], where the policy decides the rest.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use proto::{Principal, Role};
use secure::LiveTokenBook;

use crate::Handles;
use crate::error::ApiError;

/// The scheme of the `Authorization` header, compared without regard to case (RFC 7235).
const BEARER_SCHEME: &str = "bearer";
/// Asks for a token; with an `error` when the one presented was refused (RFC 6750).
const CHALLENGE: &str = "Bearer realm=\"wasmos\"";
const CHALLENGE_INVALID: &str = "Bearer realm=\"wasmos\", error=\"invalid_token\"";
const CHALLENGE_SCOPE: &str = "Bearer realm=\"wasmos\", error=\"insufficient_scope\"";

/// The authenticated caller of a request, as [`authenticate`] attached it.
#[derive(Clone, Debug)]
pub struct Caller(pub Principal);

/// Why a request was refused, as answered.
#[derive(Debug)]
enum Refusal {
    NoToken,
    BadToken,
    ReadOnly(Principal),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (error, challenge) = match self {
            Refusal::NoToken => (
                unauthorized(
                    "this API needs `Authorization: Bearer TOKEN` (`wasmos secure token` makes one)",
                ),
                CHALLENGE,
            ),
            Refusal::BadToken => (
                unauthorized("the bearer token is not one of this cluster's"),
                CHALLENGE_INVALID,
            ),
            Refusal::ReadOnly(caller) => (
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("{caller} may only read (GET): its role is viewer"),
                ),
                CHALLENGE_SCOPE,
            ),
        };
        let mut response = error.into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        response
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// The middleware: finds the caller (or refuses the request) and attaches it.
pub(crate) async fn authenticate(
    State(handles): State<Handles>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = match &handles.tokens {
        None => Principal::anonymous(),
        Some(book) => match caller_of(book, request.method(), request.headers()) {
            Ok(caller) => caller,
            Err(refusal) => {
                tracing::debug!(?refusal, method = %request.method(), uri = %request.uri(), "HTTP request refused");
                return refusal.into_response();
            }
        },
    };
    request.extensions_mut().insert(Caller(caller));
    next.run(request).await
}

fn caller_of(
    book: &LiveTokenBook,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Principal, Refusal> {
    let presented = bearer_token(headers).ok_or(Refusal::NoToken)?;
    let caller = book.check(presented).ok_or(Refusal::BadToken)?;
    let reads = method == Method::GET || method == Method::HEAD;
    if caller.role == Role::Viewer && !reads {
        return Err(Refusal::ReadOnly(caller));
    }
    Ok(caller)
}

/// The token of `Authorization: Bearer TOKEN`; `None` when there is no such header or it
/// is not of that form.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case(BEARER_SCHEME) && !token.is_empty()).then_some(token)
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    /// A route the middleware did not run on has no caller: refused, never served as
    /// anybody.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Caller, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| unauthorized("no caller was established for this route"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_a_bearer_header_carries_a_token() {
        assert_eq!(bearer_token(&headers("Bearer wsm_abc")), Some("wsm_abc"));
        assert_eq!(bearer_token(&headers("bearer  wsm_abc ")), Some("wsm_abc"));
        assert_eq!(bearer_token(&headers("Basic dXNlcjpwdw==")), None);
        assert_eq!(bearer_token(&headers("Bearer")), None);
        assert_eq!(bearer_token(&headers("Bearer ")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
