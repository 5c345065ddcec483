//! The web dashboard: static HTML, CSS and JavaScript compiled into the binary. The page
//! loads `/api/v1/state` once, then follows `/api/v1/events` (read with `fetch`, so that
//! it carries the bearer token); nothing is built at install time. These files are served
//! without a token: they hold no cluster data, and the page asks for the token.

use axum::http::header;
use axum::response::{Html, IntoResponse};

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const APP_CSS: &str = include_str!("dashboard/app.css");

pub(crate) async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

pub(crate) async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
}

pub(crate) async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS)
}
