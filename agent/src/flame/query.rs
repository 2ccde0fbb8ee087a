//! `GET /api/v1/flamegraph`: one service's stacks over a window, as an SVG
//! (flame, icicle or flame chart), as folded text, or against an earlier
//! window as a differential graph. `GET /api/v1/flamegraph/series` lists what
//! is stored.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::FlameGraphs;
use super::labels::{Labels, contains_all, parse_labels};
use super::render::{Look, Mode, Source, differential, render_svg};
use super::spans::{FoldedTrace, flame_chart, fold_trace};
use super::store::CountMeta;
use crate::server::json_error;

/// The window when `from` is not given.
const DEFAULT_WINDOW_SECONDS: u64 = 15 * 60;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Params {
    source: String,
    service: Option<String>,
    route: Option<String>,
    labels: Option<String>,
    from: Option<String>,
    to: Option<String>,
    mode: Option<String>,
    format: Option<String>,
    diff_from: Option<String>,
    diff_to: Option<String>,
    normalize: Option<bool>,
    trace_id: Option<String>,
}

/// Which stored series a request reads.
enum Filter {
    Route(Option<String>),
    Labels(Labels),
}

impl Filter {
    fn matches(&self, detail: &str) -> bool {
        match self {
            Self::Route(None) => true,
            Self::Route(Some(route)) => detail == route,
            Self::Labels(labels) => contains_all(detail, labels),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Route(None) => "route (all routes)".to_owned(),
            Self::Route(Some(route)) => format!("route {route}"),
            Self::Labels(labels) if labels.is_empty() => "(all labels)".to_owned(),
            Self::Labels(labels) => format!("labels {{{}}}", super::labels::canonical(labels)),
        }
    }
}

/// What a valid request asks for.
struct Request {
    source: Source,
    service: String,
    filter: Filter,
    window: (u64, u64),
    before: Option<(u64, u64)>,
    mode: Mode,
    folded: bool,
    normalize: bool,
}

fn bad(reason: impl AsRef<str>) -> Response {
    json_error(StatusCode::BAD_REQUEST, reason.as_ref())
}

pub(super) async fn flamegraph(
    State(flames): State<Arc<FlameGraphs>>,
    params: Result<Query<Params>, QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(params)) => params,
        Err(e) => {
            return bad(format!(
                "bad query: {}; parameters: source=spans|cpu, service, route, labels, from, to, mode=flame|icicle|chart, format=svg|folded, diff_from, diff_to, normalize, trace_id",
                e.body_text()
            ));
        }
    };
    if let Some(trace_id) = &params.trace_id {
        return single_trace(&flames, trace_id, &params).await;
    }
    let request = match validate(params) {
        Ok(request) => request,
        Err(reason) => return bad(reason),
    };
    let store = match request.source {
        Source::Spans => flames.spans.store(),
        Source::Cpu => &flames.cpu,
    };
    let matches = |detail: &str| request.filter.matches(detail);
    let (from, to) = request.window;
    let selection = store.select(&request.service, matches, from, to);
    if selection.stacks.is_empty() {
        return no_samples(&request, request.window);
    }
    let look = look(&request, &selection.meta);
    if let Some(before_window) = request.before {
        let before = store.select(&request.service, matches, before_window.0, before_window.1);
        if before.stacks.is_empty() {
            return no_samples(&request, before_window);
        }
        let text = match differential(
            &before.stacks.to_folded(),
            &selection.stacks.to_folded(),
            request.normalize,
        ) {
            Ok(text) => text,
            Err(e) => return failed(&e),
        };
        return if request.folded {
            folded_response(text)
        } else {
            let mut look = look;
            look.title = format!("Differential {}", look.title);
            look.subtitle = format!(
                "before {} · after {} · red grew, blue shrank",
                describe_window(before_window),
                describe_window(request.window)
            );
            svg_response(&flames, text, look).await
        };
    }
    let text = if request.mode == Mode::Chart {
        // Buckets oldest first; within one, stacks sorted.
        store
            .buckets(&request.service, matches, from, to)
            .iter()
            .map(|(_, stacks)| stacks.to_folded())
            .collect()
    } else {
        selection.stacks.to_folded()
    };
    if request.folded {
        folded_response(text)
    } else {
        svg_response(&flames, text, look).await
    }
}

async fn single_trace(flames: &Arc<FlameGraphs>, trace_id: &str, params: &Params) -> Response {
    if params.source != "spans" {
        return bad("trace_id needs source=spans");
    }
    let Some(trace) = flames.spans.recent(trace_id) else {
        return json_error(
            StatusCode::NOT_FOUND,
            &format!(
                "trace {trace_id} is not among the {} most recent traces (flame.recent_traces)",
                flames.spans.recent_capacity()
            ),
        );
    };
    let mode = match params
        .mode
        .as_deref()
        .map_or(Some(Mode::Chart), Mode::parse)
    {
        Some(mode) => mode,
        None => return bad("mode: expected flame, icicle or chart"),
    };
    let spans = trace.trace.fold_spans();
    // Folded for the entry's service and route in the title, too.
    let folded = fold_trace(&spans);
    let text: String = if mode == Mode::Chart {
        flame_chart(&spans)
            .into_iter()
            .map(|(stack, micros)| format!("{stack} {micros}\n"))
            .collect()
    } else {
        folded
            .as_ref()
            .map(FoldedTrace::to_folded)
            .unwrap_or_default()
    };
    let Some(folded) = folded.filter(|_| !text.is_empty()) else {
        return json_error(
            StatusCode::NOT_FOUND,
            &format!("trace {trace_id} has no span of 1 µs or more"),
        );
    };
    if params.format.as_deref() == Some("folded") {
        return folded_response(text);
    }
    let look = Look {
        mode,
        source: Source::Spans,
        title: format!(
            "Trace {} · {} {}",
            trace.trace_id, folded.service, folded.route
        ),
        subtitle: "spans in time order · self time in µs".to_owned(),
        count_name: "µs".to_owned(),
    };
    svg_response(flames, text, look).await
}

fn validate(params: Params) -> Result<Request, String> {
    let source = match params.source.as_str() {
        "spans" => Source::Spans,
        "cpu" => Source::Cpu,
        other => return Err(format!("source: `{other}` is not spans or cpu")),
    };
    let service = params
        .service
        .filter(|s| !s.is_empty())
        .ok_or_else(|| String::from("missing query parameter `service`"))?;
    let filter = match source {
        Source::Spans => {
            if params.labels.is_some() {
                return Err(String::from(
                    "labels applies to source=cpu; span graphs take route",
                ));
            }
            Filter::Route(params.route.filter(|r| !r.is_empty()))
        }
        Source::Cpu => {
            if params.route.is_some() {
                return Err(String::from(
                    "route applies to source=spans; CPU profiles take labels",
                ));
            }
            Filter::Labels(parse_labels(
                params.labels.as_deref().unwrap_or(""),
                "labels",
            )?)
        }
    };
    let now = crate::signals::unix_now();
    let window = parse_window(
        params.from.as_deref(),
        params.to.as_deref(),
        "from",
        "to",
        now,
    )?;
    let before = match (&params.diff_from, &params.diff_to) {
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(String::from("diff_from and diff_to go together"));
        }
        (from, to) => Some(parse_window(
            from.as_deref(),
            to.as_deref(),
            "diff_from",
            "diff_to",
            now,
        )?),
    };
    let mode = match params.mode.as_deref() {
        None => Mode::Flame,
        Some(mode) => Mode::parse(mode)
            .ok_or_else(|| String::from("mode: expected flame, icicle or chart"))?,
    };
    if before.is_some() && mode == Mode::Chart {
        return Err(String::from(
            "a differential graph is a flame or icicle graph, not a chart",
        ));
    }
    let folded = match params.format.as_deref() {
        None | Some("svg") => false,
        Some("folded") => true,
        Some(other) => return Err(format!("format: `{other}` is not svg or folded")),
    };
    Ok(Request {
        source,
        service,
        filter,
        window,
        before,
        mode,
        folded,
        normalize: params.normalize.unwrap_or(false),
    })
}

/// A `[from, to)` window; times are unix seconds or RFC 3339.
fn parse_window(
    from: Option<&str>,
    to: Option<&str>,
    from_key: &str,
    to_key: &str,
    now: u64,
) -> Result<(u64, u64), String> {
    let to = to
        .map(|t| parse_time(t, to_key))
        .transpose()?
        .unwrap_or(now + 1);
    let from = from
        .map(|f| parse_time(f, from_key))
        .transpose()?
        .unwrap_or(to.saturating_sub(DEFAULT_WINDOW_SECONDS));
    if from >= to {
        return Err(format!("{from_key} must be before {to_key}"));
    }
    Ok((from, to))
}

fn parse_time(value: &str, key: &str) -> Result<u64, String> {
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Ok(seconds);
    }
    humantime::parse_rfc3339_weak(value.trim())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .ok_or_else(|| format!("{key}: `{value}` is neither unix seconds nor an RFC 3339 time"))
}

fn describe_window((from, to): (u64, u64)) -> String {
    let at = |s: u64| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s));
    format!("{} and {}", at(from), at(to))
}

fn no_samples(request: &Request, window: (u64, u64)) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        &format!(
            "no samples for service {} {} between {}",
            request.service,
            request.filter.describe(),
            describe_window(window)
        ),
    )
}

fn look(request: &Request, meta: &CountMeta) -> Look {
    let filter = request.filter.describe();
    let (title, count_name, unit) = match request.source {
        Source::Spans => (
            format!("Span flame graph · {} · {filter}", request.service),
            "µs".to_owned(),
            "self time in µs".to_owned(),
        ),
        Source::Cpu => {
            let count_name = meta.unit.clone().unwrap_or_else(|| "samples".to_owned());
            let unit = match meta.sample_rate_hz {
                Some(hz) => format!("{count_name} at {hz} Hz"),
                None => count_name.clone(),
            };
            let title = format!("CPU profile · {} · {filter}", request.service);
            (title, count_name, unit)
        }
    };
    Look {
        mode: request.mode,
        source: request.source,
        title,
        subtitle: format!("between {} · {unit}", describe_window(request.window)),
        count_name,
    }
}

fn folded_response(text: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn svg_response(flames: &Arc<FlameGraphs>, text: String, look: Look) -> Response {
    let Ok(_permit) = flames.renders.try_acquire() else {
        let mut response = json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "other flame graphs are being rendered: retry in a second",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let rendered = tokio::task::spawn_blocking(move || render_svg(text.lines(), &look)).await;
    match rendered {
        Ok(Ok(svg)) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/svg+xml"),
            )],
            svg,
        )
            .into_response(),
        Ok(Err(e)) => failed(&e),
        Err(e) => failed(&e),
    }
}

fn failed(error: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %error, "flame graph rendering failed");
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the flame graph could not be rendered",
    )
}

/// `GET /api/v1/flamegraph/series`: every stored series with the time it covers.
pub(super) async fn series(State(flames): State<Arc<FlameGraphs>>) -> Response {
    let list = |source: &str, store: &super::StackStore| -> Vec<serde_json::Value> {
        store
            .series()
            .into_iter()
            .map(|(key, from, to)| {
                let detail = if source == "spans" { "route" } else { "labels" };
                serde_json::json!({
                    "source": source,
                    "service": key.service,
                    detail: key.detail,
                    "from": from,
                    "to": to,
                })
            })
            .collect()
    };
    let mut all = list("spans", flames.spans.store());
    all.extend(list("cpu", &flames.cpu));
    axum::Json(serde_json::json!({ "series": all })).into_response()
}
