//! Receiving CPU profiles on the admin listener: `POST /v1/profiles` (native)
//! and `POST /ingest` (Pyroscope's HTTP API, so existing Pyroscope clients can
//! send here). Bodies are folded text or pprof protobuf, gzip or not; size is
//! bounded before and after decompression, and decoding runs off the async
//! threads. Every answer about bad input is a 4xx naming the line or field.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::FlameGraphs;
use super::folded::{Stacks, parse_folded};
use super::labels::{Labels, canonical, parse_labels, parse_pyroscope_name};
use super::pprof::decode_pprof;
use super::store::{CountMeta, SeriesKey};
use crate::server::json_error;

/// Profile body formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Folded,
    Pprof,
}

impl Format {
    fn as_str(self) -> &'static str {
        match self {
            Self::Folded => "folded",
            Self::Pprof => "pprof",
        }
    }
}

/// One profile to store, from either endpoint.
struct Upload {
    service: String,
    labels: Labels,
    format: Option<Format>,
    sample_rate_hz: Option<u32>,
    sample_type: Option<String>,
    /// Unix seconds the profile ends at.
    until: Option<u64>,
}

/// A refused profile: status and reason.
struct Refusal(StatusCode, String);

impl Refusal {
    fn bad(reason: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, reason.into())
    }
}

/// `POST /v1/profiles?service=&labels=k=v,..&format=folded|pprof&sample_rate=&from=&until=&sample_type=`
pub(super) async fn native(
    State(flames): State<Arc<FlameGraphs>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let upload = match native_upload(&params) {
        Ok(upload) => upload,
        Err(Refusal(status, reason)) => return refuse(&flames, None, status, &reason),
    };
    store(flames, upload, &headers, body).await
}

/// Pyroscope's `POST /ingest?name=app.cpu{k=v}&from=&until=&format=&sampleRate=`.
pub(super) async fn pyroscope(
    State(flames): State<Arc<FlameGraphs>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let upload = match pyroscope_upload(&params) {
        Ok(upload) => upload,
        Err(Refusal(status, reason)) => return refuse(&flames, None, status, &reason),
    };
    store(flames, upload, &headers, body).await
}

fn native_upload(params: &HashMap<String, String>) -> Result<Upload, Refusal> {
    const KNOWN: [&str; 7] = [
        "service",
        "labels",
        "format",
        "sample_rate",
        "sample_type",
        "from",
        "until",
    ];
    if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(Refusal::bad(format!(
            "unknown query parameter `{unknown}` (known: {})",
            KNOWN.join(", ")
        )));
    }
    let service = params
        .get("service")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Refusal::bad("missing query parameter `service` (the app's service.name)")
        })?;
    if service.len() > 256 {
        return Err(Refusal::bad("service: longer than 256 bytes"));
    }
    Ok(Upload {
        service: service.to_owned(),
        labels: parse_labels(params.get("labels").map_or("", String::as_str), "labels")
            .map_err(Refusal::bad)?,
        format: format_param(params.get("format"))?,
        sample_rate_hz: number_param(params, "sample_rate")?,
        sample_type: params.get("sample_type").cloned(),
        until: until_param(params)?,
    })
}

fn pyroscope_upload(params: &HashMap<String, String>) -> Result<Upload, Refusal> {
    let name = params
        .get("name")
        .ok_or_else(|| Refusal::bad("missing query parameter `name` (app.cpu{labels})"))?;
    let (service, labels) = parse_pyroscope_name(name).map_err(Refusal::bad)?;
    // Pyroscope clients send more (spyName, units, aggregationType): ignored.
    Ok(Upload {
        service,
        labels,
        format: format_param(params.get("format"))?,
        sample_rate_hz: number_param(params, "sampleRate")?,
        sample_type: None,
        until: until_param(params)?,
    })
}

fn format_param(value: Option<&String>) -> Result<Option<Format>, Refusal> {
    match value.map(String::as_str) {
        None | Some("") => Ok(None),
        Some("folded") => Ok(Some(Format::Folded)),
        Some("pprof") => Ok(Some(Format::Pprof)),
        Some(other) => Err(Refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("format={other} is not supported: send folded or pprof"),
        )),
    }
}

fn number_param<T: std::str::FromStr>(
    params: &HashMap<String, String>,
    key: &str,
) -> Result<Option<T>, Refusal> {
    params
        .get(key)
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| Refusal::bad(format!("{key}: `{v}` is not a non-negative integer")))
        })
        .transpose()
}

/// The profile's end: `until`, else `from`, in unix seconds.
fn until_param(params: &HashMap<String, String>) -> Result<Option<u64>, Refusal> {
    Ok(number_param(params, "until")?.or(number_param(params, "from")?))
}

async fn store(
    flames: Arc<FlameGraphs>,
    upload: Upload,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let limit = flames.max_profile_size;
    let raw = match axum::body::to_bytes(body, limit).await {
        Ok(raw) => raw,
        Err(_) => {
            let reason = format!("profile larger than flame.max_profile_size ({limit} bytes)");
            return refuse(
                &flames,
                upload.format,
                StatusCode::PAYLOAD_TOO_LARGE,
                &reason,
            );
        }
    };
    let content_type = header_text(headers, header::CONTENT_TYPE);
    if content_type.starts_with("multipart/") {
        let reason =
            "multipart uploads are not supported: send the pprof or folded profile as the raw body";
        return refuse(
            &flames,
            upload.format,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            reason,
        );
    }
    let gzip_header = match header_text(headers, header::CONTENT_ENCODING).as_str() {
        "" | "identity" => false,
        "gzip" | "x-gzip" => true,
        other => {
            let reason = format!("unsupported content encoding `{other}`: send gzip or none");
            return refuse(
                &flames,
                upload.format,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &reason,
            );
        }
    };
    let cap = flames.cpu.limits().max_stacks;
    let declared = upload
        .format
        .or_else(|| format_from_content_type(&content_type));
    let sample_type = upload.sample_type.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        decode_body(
            &raw,
            gzip_header,
            declared,
            sample_type.as_deref(),
            limit,
            cap,
        )
    })
    .await;
    let (format, stacks, pprof_meta) = match decoded {
        Ok(Ok(decoded)) => decoded,
        Ok(Err((format, Refusal(status, reason)))) => {
            return refuse(&flames, format, status, &reason);
        }
        Err(e) => {
            tracing::error!(error = %e, "profile decoding task failed");
            return json_error(StatusCode::INTERNAL_SERVER_ERROR, "profile decoding failed");
        }
    };
    let now = crate::signals::unix_now();
    // A clock ahead of the agent's is not the profile's fault: store it now.
    let time = upload.until.filter(|t| *t <= now).unwrap_or(now);
    let retention = flames.cpu.limits().retention_seconds;
    if time + retention < now {
        let reason = format!(
            "until={time} is older than flame.retention ({retention} s): nothing would be kept"
        );
        return refuse(&flames, Some(format), StatusCode::BAD_REQUEST, &reason);
    }
    let meta = CountMeta {
        sample_rate_hz: upload.sample_rate_hz.or(pprof_meta.sample_rate_hz),
        unit: pprof_meta.unit,
    };
    let labels = canonical(&upload.labels);
    flames.cpu.add(
        SeriesKey {
            service: upload.service.clone(),
            detail: labels.clone(),
        },
        time,
        &stacks,
        meta,
    );
    flames.metrics.profile(format.as_str(), "accepted");
    axum::Json(serde_json::json!({
        "service": upload.service,
        "labels": labels,
        "format": format.as_str(),
        "time": time,
        "stacks": stacks.len(),
        "samples": stacks.total(),
        "overflowStacks": stacks.overflowed_stacks,
    }))
    .into_response()
}

type Decoded = (Format, Stacks, CountMeta);

/// Decompresses (bounded) and decodes a body. Gzip is recognised by header
/// or magic bytes (some clients compress without saying so); without a
/// declared format, UTF-8 text is folded and anything else pprof.
fn decode_body(
    raw: &Bytes,
    gzip_header: bool,
    declared: Option<Format>,
    sample_type: Option<&str>,
    limit: usize,
    cap: usize,
) -> Result<Decoded, (Option<Format>, Refusal)> {
    let body = if gzip_header || raw.starts_with(&[0x1f, 0x8b]) {
        gunzip(raw, limit).map_err(|refusal| (declared, refusal))?
    } else {
        raw.clone()
    };
    let format = declared.unwrap_or_else(|| {
        if std::str::from_utf8(&body).is_ok() {
            Format::Folded
        } else {
            Format::Pprof
        }
    });
    match format {
        Format::Folded => parse_folded(&body, cap)
            .map(|stacks| (format, stacks, CountMeta::default()))
            .map_err(|e| (Some(format), Refusal::bad(format!("folded profile: {e}")))),
        Format::Pprof => decode_pprof(&body, sample_type, cap)
            .map(|p| {
                let unit = match p.sample_type.1.as_str() {
                    "count" | "" => None,
                    "nanoseconds" => Some("ns".to_owned()),
                    other => Some(other.to_owned()),
                };
                let meta = CountMeta {
                    sample_rate_hz: p.sample_rate_hz,
                    unit,
                };
                (format, p.stacks, meta)
            })
            .map_err(|e| (Some(format), Refusal::bad(e.to_string()))),
    }
}

fn gunzip(body: &[u8], limit: usize) -> Result<Bytes, Refusal> {
    use std::io::Read as _;
    let mut out = Vec::with_capacity((body.len() * 4).min(limit));
    flate2::read::MultiGzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Refusal::bad(format!("invalid gzip body: {e}")))?;
    if out.len() > limit {
        return Err(Refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "profile larger than flame.max_profile_size ({limit} bytes) after decompression"
            ),
        ));
    }
    Ok(Bytes::from(out))
}

fn format_from_content_type(content_type: &str) -> Option<Format> {
    match content_type.split(';').next().unwrap_or("").trim() {
        "application/x-protobuf" | "application/protobuf" | "application/vnd.google.protobuf" => {
            Some(Format::Pprof)
        }
        "text/plain" => Some(Format::Folded),
        _ => None,
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

fn refuse(
    flames: &FlameGraphs,
    format: Option<Format>,
    status: StatusCode,
    reason: &str,
) -> Response {
    let result = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "too_large"
    } else {
        "bad_request"
    };
    flames
        .metrics
        .profile(format.map_or("unknown", Format::as_str), result);
    json_error(status, reason)
}
