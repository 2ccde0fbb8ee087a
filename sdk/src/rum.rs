//! Puts the agent's RUM script into the app's HTML pages: a tower layer that
//! adds `<script src="<agent>/rum.js" defer>` before `</head>` of every
//! uncompressed `text/html` response of known, bounded size. Other responses
//! pass through untouched, streamed as they were.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response, header};
use http_body::Body;
use http_body_util::{BodyExt as _, Either, Full};
use tower::{Layer, Service};

/// Pages larger than this are passed through without the script: buffering
/// them would cost the app memory and time to first byte.
const MAX_PAGE: u64 = 2 * 1024 * 1024;

/// The layer; `agent_url` is the agent's public listener as browsers reach
/// it, e.g. `https://example.com/telltale` or `http://127.0.0.1:8686`.
#[derive(Debug, Clone)]
pub struct RumLayer {
    tag: Arc<str>,
}

impl RumLayer {
    /// Injects `<script src="{agent_url}/rum.js" defer></script>`.
    pub fn new(agent_url: &str) -> Self {
        let base = agent_url.trim_end_matches('/');
        let base = html_escape(base);
        Self {
            tag: format!("<script src=\"{base}/rum.js\" defer></script>").into(),
        }
    }
}

impl<S> Layer<S> for RumLayer {
    type Service = RumService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RumService {
            inner,
            tag: Arc::clone(&self.tag),
        }
    }
}

/// The service [`RumLayer`] wraps around an app.
#[derive(Debug, Clone)]
pub struct RumService<S> {
    inner: S,
    tag: Arc<str>,
}

/// What the service answers: the app's body, or the page with the script.
pub type RumBody<B> = Either<B, Full<Bytes>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RumService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send,
{
    type Response = Response<RumBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let response = self.inner.call(request);
        let tag = Arc::clone(&self.tag);
        Box::pin(async move {
            let response = response.await?;
            if !injectable(&response) {
                return Ok(response.map(Either::Left));
            }
            let (mut parts, body) = response.into_parts();
            match body.collect().await {
                Ok(collected) => {
                    let page = inject(&collected.to_bytes(), &tag);
                    parts.headers.remove(header::CONTENT_LENGTH);
                    if let Ok(length) = HeaderValue::from_str(&page.len().to_string()) {
                        parts.headers.insert(header::CONTENT_LENGTH, length);
                    }
                    Ok(Response::from_parts(parts, Either::Right(Full::new(page))))
                }
                // The app's body failed midway: the page is lost either way;
                // answer what was there (nothing) rather than a half page.
                Err(_) => Ok(Response::from_parts(
                    parts,
                    Either::Right(Full::new(Bytes::new())),
                )),
            }
        })
    }
}

fn injectable<B: Body>(response: &Response<B>) -> bool {
    let headers = response.headers();
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"));
    let encoded = headers.contains_key(header::CONTENT_ENCODING);
    let bounded = response
        .body()
        .size_hint()
        .upper()
        .is_some_and(|size| size <= MAX_PAGE);
    html && !encoded && bounded && response.status().is_success()
}

/// The page with `tag` before `</head>`, else after the `<body ...>` tag, else first.
fn inject(page: &[u8], tag: &str) -> Bytes {
    let lower = page.to_ascii_lowercase();
    let at = find(&lower, b"</head>").or_else(|| {
        find(&lower, b"<body").and_then(|start| {
            lower[start..]
                .iter()
                .position(|&b| b == b'>')
                .map(|end| start + end + 1)
        })
    });
    let at = at.unwrap_or(0);
    let mut out = Vec::with_capacity(page.len() + tag.len());
    out.extend_from_slice(&page[..at]);
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(&page[at..]);
    Bytes::from(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt as _;

    const TAG: &str = "<script src=\"http://127.0.0.1:8686/rum.js\" defer></script>";

    async fn through(
        content_type: &str,
        encoding: Option<&str>,
        page: &'static str,
    ) -> (String, Option<String>) {
        let content_type = content_type.to_owned();
        let encoding = encoding.map(str::to_owned);
        let app = tower::service_fn(move |_: Request<()>| {
            let mut response =
                Response::builder().header(header::CONTENT_TYPE, content_type.as_str());
            if let Some(encoding) = &encoding {
                response = response.header(header::CONTENT_ENCODING, encoding.as_str());
            }
            let response = response
                .header(header::CONTENT_LENGTH, page.len())
                .body(Full::new(Bytes::from_static(page.as_bytes())))
                .unwrap();
            async move { Ok::<_, std::convert::Infallible>(response) }
        });
        let service = RumLayer::new("http://127.0.0.1:8686/").layer(app);
        let response = service.oneshot(Request::new(())).await.unwrap();
        let length = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (String::from_utf8(body.to_vec()).unwrap(), length)
    }

    #[tokio::test]
    async fn script_goes_before_the_end_of_head_and_length_follows() {
        let (page, length) = through(
            "text/html; charset=utf-8",
            None,
            "<html><HEAD><title>x</title></HEAD><body>hi</body></html>",
        )
        .await;
        assert_eq!(
            page,
            format!("<html><HEAD><title>x</title>{TAG}</HEAD><body>hi</body></html>")
        );
        assert_eq!(length, Some(page.len().to_string()));
    }

    #[tokio::test]
    async fn without_head_the_script_opens_the_body() {
        let (page, _) = through("text/html", None, "<body class=\"a\">hi</body>").await;
        assert_eq!(page, format!("<body class=\"a\">{TAG}hi</body>"));
    }

    #[tokio::test]
    async fn other_types_and_compressed_pages_pass_untouched() {
        let (json, _) = through("application/json", None, "{\"head\":\"</head>\"}").await;
        assert_eq!(json, "{\"head\":\"</head>\"}");
        let (gzipped, _) = through("text/html", Some("gzip"), "</head>").await;
        assert_eq!(gzipped, "</head>");
    }

    #[test]
    fn the_agent_url_is_escaped() {
        let layer = RumLayer::new("http://x/\"><script>");
        assert!(!layer.tag.contains("\"><script>"));
    }
}
