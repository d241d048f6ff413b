//! Server-rendered HTML, shared by every page exbind serves (the OAuth authorize pages, the
//! console): one document shell, one stylesheet and the other embedded assets under
//! `/_exbind/assets/`, one way to render an error page, and the headers every page carries.
//!
//! Pages are plain HTML that works without JavaScript; scripts, where a page has any, are
//! embedded assets too, so the Content-Security-Policy can forbid everything not from the
//! server itself.

use std::sync::LazyLock;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use exbind_api::ErrorCode;
use http::{header, HeaderValue, StatusCode};
use maud::{html, Markup, DOCTYPE};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::http::{ApiPath as Path, ApiQuery as Query};
use crate::state::SharedState;

pub const HTML_UTF8: &str = "text/html; charset=utf-8";

/// Nothing but the server's own origin; no framing (the consent page must not be
/// clickjacked). `form-action` is left open: the authorize form's answer redirects to the
/// app's own redirect URI, which browsers check against `form-action`.
pub const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
                       base-uri 'none'; frame-ancestors 'none'";

/// A file embedded in the binary and served under `/_exbind/assets/{name}`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "exbind.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../assets/exbind.css"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../assets/console.js"),
    },
];

/// Each asset's content hash, so its URL changes with its content and can be cached for good.
static VERSIONS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| hex::encode(&Sha256::digest(a.body.as_bytes())[..6]))
        .collect()
});

fn asset(name: &str) -> Option<(&'static Asset, &'static str)> {
    let i = ASSETS.iter().position(|a| a.name == name)?;
    Some((&ASSETS[i], VERSIONS[i].as_str()))
}

/// The URL of an embedded asset, versioned by its content.
///
/// # Panics
/// On a name that is not embedded: a programming error that every page's test would show.
pub fn asset_url(name: &str) -> String {
    let (a, v) = asset(name).unwrap_or_else(|| panic!("no embedded asset {name}"));
    format!("/_exbind/assets/{}?v={v}", a.name)
}

pub fn routes() -> Router<SharedState> {
    Router::new().route("/_exbind/assets/{name}", get(serve_asset))
}

#[derive(serde::Deserialize)]
struct AssetQuery {
    v: Option<String>,
}

async fn serve_asset(
    Path(name): Path<String>,
    Query(q): Query<AssetQuery>,
) -> Result<Response, ApiError> {
    let (a, version) = asset(&name).ok_or_else(|| {
        ApiError::new(ErrorCode::ResourceNotFound).message(format!("no asset {name:?}"))
    })?;
    // A URL with the current version never changes; any other may, so it is revalidated.
    let cache = if q.v.as_deref() == Some(version) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut resp = Response::new(Body::from(a.body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(resp)
}

/// The brand mark and name, linking nowhere.
pub fn brand() -> Markup {
    html! {
        span class="brand" {
            span class="brand-mark" aria-hidden="true" { "e" }
            "exbind"
        }
    }
}

/// A whole document: `title` (the site name is appended), the class of `body` (`auth` for a
/// centred card, `app` for the console's layout), its content, and embedded scripts by name.
pub fn document(title: &str, body_class: &str, content: Markup, scripts: &[&str]) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · exbind" }
                link rel="stylesheet" href=(asset_url("exbind.css"));
                @for s in scripts {
                    script src=(asset_url(s)) defer {}
                }
            }
            body class=(body_class) {
                (content)
            }
        }
    }
}

/// A page of the sign-in kind: the brand above one centred column.
pub fn auth_page(title: &str, main: Markup) -> Markup {
    document(
        title,
        "auth",
        html! {
            header class="auth-brand" { (brand()) }
            main id="main" class="auth-main" { (main) }
            footer class="auth-footer muted small" {
                "exbind — a stand-in for the Feishu / Lark Open Platform"
            }
        },
        &[],
    )
}

/// An HTML answer with the headers every page carries. Pages are never cached: they hold
/// short-lived handles (sign-in requests, CSRF tokens).
pub fn respond(status: StatusCode, page: Markup) -> Response {
    let mut resp = Response::new(Body::from(page.into_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(HTML_UTF8));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The one way an HTML error is shown: a card with a heading saying what went wrong, a
/// sentence saying why or what to do, and the HTTP status.
pub fn error_page(status: StatusCode, heading: &str, message: &str) -> Response {
    let page = auth_page(
        heading,
        html! {
            section class="card" role="alert" aria-labelledby="error-heading" {
                h1 id="error-heading" { (heading) }
                p { (message) }
                p class="muted small" {
                    "HTTP " (status.as_u16())
                    @if let Some(reason) = status.canonical_reason() { " · " (reason) }
                }
            }
        },
    );
    respond(status, page)
}

impl IntoResponse for HtmlError {
    fn into_response(self) -> Response {
        error_page(self.status, &self.heading, &self.message)
    }
}

/// An error a page handler returns, shown with `error_page`.
#[derive(Debug, Clone)]
pub struct HtmlError {
    pub status: StatusCode,
    pub heading: String,
    pub message: String,
}

impl HtmlError {
    pub fn new(status: StatusCode, heading: impl Into<String>, message: impl Into<String>) -> Self {
        HtmlError {
            status,
            heading: heading.into(),
            message: message.into(),
        }
    }
}

/// A page's answer to an address it cannot take.
fn unreadable_address(why: String) -> HtmlError {
    HtmlError::new(StatusCode::BAD_REQUEST, "This address cannot be read", why)
}

/// `Query` for a page: a query string it cannot take (a field given twice, say) is answered
/// with an error page.
pub struct PageQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for PageQuery<T>
{
    type Rejection = HtmlError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        s: &S,
    ) -> Result<Self, HtmlError> {
        axum::extract::Query::<T>::from_request_parts(parts, s)
            .await
            .map(|q| PageQuery(q.0))
            .map_err(|e| unreadable_address(e.body_text()))
    }
}

/// `Path` for a page: a path segment it cannot take (bytes that are no UTF-8, say) is
/// answered with an error page, not the API's JSON.
pub struct PagePath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for PagePath<T>
{
    type Rejection = HtmlError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        s: &S,
    ) -> Result<Self, HtmlError> {
        axum::extract::Path::<T>::from_request_parts(parts, s)
            .await
            .map(|p| PagePath(p.0))
            .map_err(|e| unreadable_address(e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_link_the_versioned_stylesheet_and_escape_text() {
        let page = auth_page("A <title>", html! { p { "x & y" } }).into_string();
        assert!(
            page.starts_with("<!DOCTYPE html><html lang=\"en\">"),
            "{page}"
        );
        assert!(page.contains(&asset_url("exbind.css")), "{page}");
        assert!(page.contains("A &lt;title&gt; · exbind"), "{page}");
        assert!(page.contains("x &amp; y"), "{page}");
        let url = asset_url("exbind.css");
        let v = url.split("?v=").nth(1).unwrap();
        assert_eq!(v.len(), 12);
        assert!(v.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn error_pages_carry_the_page_headers() {
        let resp = error_page(StatusCode::BAD_REQUEST, "Can't sign in", "Because.");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let h = resp.headers();
        assert_eq!(h[header::CONTENT_TYPE], HTML_UTF8);
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
    }
}
