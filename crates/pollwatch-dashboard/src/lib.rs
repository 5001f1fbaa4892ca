//! The core team's dashboard: pages in the browser at `/`, served by the worker's listener and by
//! `pollwatch serve` wherever the read API is.
//!
//! A page is a shell (no data: the navigation, the sign-in form, an empty view) and one script
//! of ours, `assets/dashboard.js`. The script keeps the viewer token in the browser session
//! (`sessionStorage`), fetches the page's view from `/ui/...` with it as a bearer token — HTML
//! rendered here from the read API's views (`pollwatch_api::views`), escaped by the templates —
//! and reads `/api/v1/events` with the same token, fetching the view again after each change
//! that concerns it. A view is computed once per change of the store however many watch it
//! (`pollwatch_api::Api::answer_as_of`). Everything is in the binary: no internet, no Node.

mod assets;
mod pages;
mod render;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::get;
use pollwatch_api::Api;

/// The pages, their views and their assets.
pub fn router(api: Api) -> Router {
    let views = Router::new()
        .route("/ui/overview", get(pages::overview))
        .route("/ui/coverage", get(pages::coverage))
        .route("/ui/incidents", get(pages::incidents))
        .route("/ui/results", get(pages::results))
        .route("/ui/quick-count", get(pages::quick_count))
        .route("/ui/held", get(pages::held))
        .route("/ui/reports/{report_id}", get(pages::report))
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), pollwatch_api::auth::require_token));
    let mut shells = Router::new();
    for page in pages::Page::ALL {
        shells = shells.route(page.path(), get(move || async move { pages::shell(page) }));
    }
    shells
        .route(assets::SCRIPT_PATH, get(assets::script))
        .route(assets::STYLE_PATH, get(assets::style))
        .merge(views)
        .layer(axum::middleware::map_response(with_security_headers))
        .with_state(api)
}

/// What the browser may do with our pages: run our script and style only (no inline script, no
/// other origin), never frame them, never sniff a type or send a referrer.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests;
