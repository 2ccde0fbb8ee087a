//! The built-in dashboard: the files of `dashboards/web/`, embedded into the
//! binary at compile time and served on the admin listener. The files are the
//! same bytes for every visitor and carry no data, no configuration and no
//! secret: everything the dashboard shows comes from `/api/v1`, which stays
//! behind the admin token. A browser cannot put a bearer token on a page
//! navigation, so the shell must load without one to ask for it.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tower::ServiceExt as _;

/// One embedded file.
struct Asset {
    /// Where it is served.
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// Embeds `dashboards/web/<file>` and serves it at `/ui/<file>`.
macro_rules! asset {
    ($file:literal, $content_type:expr) => {
        Asset {
            path: concat!("/ui/", $file),
            content_type: $content_type,
            body: include_str!(concat!("../../dashboards/web/", $file)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the dashboard but `index.html`, which is served at `/`.
const ASSETS: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("charts.js", JS),
    asset!("format.js", JS),
    asset!("pages/overview.js", JS),
    asset!("pages/health.js", JS),
    asset!("pages/traces.js", JS),
    asset!("pages/findings.js", JS),
    asset!("pages/vitals.js", JS),
    asset!("pages/flame.js", JS),
];

const INDEX_HTML: &str = include_str!("../../dashboards/web/index.html");

/// Everything from this origin; frames only from `blob:` URLs, where the flame
/// graph is shown from an authenticated fetch (a frame cannot send the bearer
/// token). A `blob:` document inherits this policy, and inferno's SVG carries
/// its own inline script and styles, hence `'unsafe-inline'`; the dashboard's
/// scripts never turn API strings into markup (text nodes only).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-src blob:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'";

/// The dashboard's routes: `/` and `/ui/*`. They sit outside the token check
/// (see the module head); the admin router merges them.
pub fn router() -> Router {
    let mut router = Router::new().route(
        "/",
        get(|| async { serve("text/html; charset=utf-8", INDEX_HTML) }),
    );
    for asset in ASSETS {
        let (content_type, body) = (asset.content_type, asset.body);
        router = router.route(
            asset.path,
            get(move || async move { serve(content_type, body) }),
        );
    }
    router
}

fn serve(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The files change with the binary; revalidating is cheap on loopback.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        ],
        body,
    )
        .into_response()
}

/// Which optional capabilities this agent's API serves, so the dashboard asks
/// only for what exists (a request to a missing endpoint would show up as an
/// error in the browser's console) and says "not in this agent" otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Features {
    /// `/api/v1/traces` (trace assembly).
    pub traces: bool,
    /// `/api/v1/findings` (N+1 detection).
    pub findings: bool,
    /// `/api/v1/rum/pages` (web vitals).
    pub rum: bool,
    /// `/api/v1/flamegraph` (flame graphs).
    pub flamegraph: bool,
}

impl Features {
    /// Asks `api` for each capability's cheapest list endpoint: any answer but
    /// the router's own 404 means the capability is there.
    pub async fn probe(api: &Router) -> Self {
        let present = |path: &'static str| {
            let api = api.clone();
            async move {
                let Ok(request) = Request::get(path).body(Body::empty()) else {
                    return false;
                };
                match api.oneshot(request).await {
                    Ok(response) => response.status() != StatusCode::NOT_FOUND,
                    Err(never) => match never {},
                }
            }
        };
        Self {
            traces: present("/api/v1/traces?limit=1").await,
            findings: present("/api/v1/findings").await,
            rum: present("/api/v1/rum/pages").await,
            flamegraph: present("/api/v1/flamegraph/series").await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_path(router: Router, path: &str) -> (StatusCode, String, String) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn every_script_the_page_imports_is_served() {
        let (status, content_type, html) = get_path(router(), "/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("text/html"));
        assert!(html.contains("/ui/app.js"), "{html}");
        // Every module import names an embedded file: a missing one would
        // only show up in a browser.
        for asset in ASSETS {
            for line in asset.body.lines().filter(|l| l.starts_with("import ")) {
                let Some(start) = line.find("from \"") else {
                    continue;
                };
                let target = &line[start + 6..line.rfind('"').unwrap()];
                let base = asset.path.rsplit_once('/').unwrap().0;
                let resolved = resolve(base, target);
                assert!(
                    ASSETS.iter().any(|a| a.path == resolved),
                    "{} imports {target} ({resolved}), which is not embedded",
                    asset.path
                );
            }
        }
        for asset in ASSETS {
            let (status, content_type, body) = get_path(router(), asset.path).await;
            assert_eq!(status, StatusCode::OK, "{}", asset.path);
            assert_eq!(content_type, asset.content_type);
            assert_eq!(body, asset.body);
        }
    }

    fn resolve(base: &str, target: &str) -> String {
        let mut parts: Vec<&str> = base.split('/').collect();
        for piece in target.split('/') {
            match piece {
                "." => {}
                ".." => {
                    parts.pop();
                }
                other => parts.push(other),
            }
        }
        parts.join("/")
    }

    #[tokio::test]
    async fn features_are_the_routes_the_api_has() {
        let api = Router::new().route("/api/v1/findings", get(|| async { "[]" }));
        let features = Features::probe(&api).await;
        assert_eq!(
            features,
            Features {
                findings: true,
                ..Features::default()
            }
        );
    }
}
