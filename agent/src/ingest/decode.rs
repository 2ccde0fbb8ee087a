//! Turning OTLP/HTTP bodies into messages and back: media types, gzip with a
//! bound on the decompressed size, protobuf and JSON (hex ids, int64 as strings
//! or numbers, unknown fields ignored — the OTLP/JSON rules, implemented by
//! opentelemetry-proto's serde support).

use std::io::Read;

use axum::http::HeaderMap;
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The body's format, which is also the response's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json`.
    Json,
}

impl Encoding {
    /// The media type to answer with.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

/// Why a body could not be read. Each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Neither protobuf nor JSON (415).
    #[error("unsupported content type `{0}`: send application/x-protobuf or application/json")]
    UnsupportedMediaType(String),
    /// An encoding other than gzip (415).
    #[error("unsupported content encoding `{0}`: send gzip or no encoding")]
    UnsupportedEncoding(String),
    /// Over the size limit, compressed or not (413).
    #[error("request larger than the limit of {limit} bytes (after decompression)")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Corrupt gzip (400).
    #[error("invalid gzip body: {0}")]
    Gzip(String),
    /// Not a valid protobuf message of the expected type (400).
    #[error("invalid protobuf: {0}")]
    Protobuf(String),
    /// Not valid OTLP JSON (400).
    #[error("invalid OTLP JSON: {0}")]
    Json(String),
}

/// The body's format from `Content-Type` (parameters such as `charset` ignored).
pub(crate) fn media_type(headers: &HeaderMap) -> Result<Encoding, DecodeError> {
    let raw = headers
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(DecodeError::UnsupportedMediaType(raw)),
    }
}

/// Whether the body is gzip-compressed, from `Content-Encoding`.
pub(crate) fn is_gzip(headers: &HeaderMap) -> Result<bool, DecodeError> {
    match headers.get(CONTENT_ENCODING) {
        None => Ok(false),
        Some(value) => {
            let value = String::from_utf8_lossy(value.as_bytes())
                .trim()
                .to_ascii_lowercase();
            match value.as_str() {
                "gzip" | "x-gzip" => Ok(true),
                "identity" | "" => Ok(false),
                _ => Err(DecodeError::UnsupportedEncoding(value)),
            }
        }
    }
}

/// Decompresses gzip, stopping as soon as the output passes `limit`, so a
/// small bomb cannot expand into memory.
pub(crate) fn gunzip(body: &[u8], limit: usize) -> Result<Bytes, DecodeError> {
    let mut out = Vec::with_capacity((body.len() * 4).min(limit));
    flate2::read::MultiGzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Gzip(e.to_string()))?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}

/// Decodes a message in the given encoding.
pub(crate) fn decode<M>(body: &[u8], encoding: Encoding) -> Result<M, DecodeError>
where
    M: prost::Message + Default + DeserializeOwned,
{
    match encoding {
        Encoding::Protobuf => M::decode(body).map_err(|e| DecodeError::Protobuf(e.to_string())),
        Encoding::Json => {
            // serde would read a struct from an array too; OTLP requests are objects.
            if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
                return Err(DecodeError::Json("expected a JSON object".to_owned()));
            }
            serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))
        }
    }
}

/// Encodes a message in the given encoding.
pub(crate) fn encode<M>(message: &M, encoding: Encoding) -> Vec<u8>
where
    M: prost::Message + Serialize,
{
    match encoding {
        Encoding::Protobuf => message.encode_to_vec(),
        // Serializing generated OTLP types cannot fail.
        Encoding::Json => serde_json::to_vec(message).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn gzip_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![0u8; 50 * 1024 * 1024]);
        assert!(bomb.len() < 100 * 1024, "the bomb is small: {}", bomb.len());
        assert!(matches!(
            gunzip(&bomb, 1024 * 1024),
            Err(DecodeError::TooLarge { limit: 1_048_576 })
        ));
    }

    #[test]
    fn gzip_round_trip_and_corruption() {
        assert_eq!(&gunzip(&gzip(b"hello"), 100).unwrap()[..], b"hello");
        assert!(matches!(
            gunzip(b"not gzip", 100),
            Err(DecodeError::Gzip(_))
        ));
    }

    #[test]
    fn media_types_with_parameters() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(media_type(&headers).unwrap(), Encoding::Json);
        headers.insert(CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(
            matches!(media_type(&headers), Err(DecodeError::UnsupportedMediaType(t)) if t == "text/plain")
        );
        headers.insert(CONTENT_ENCODING, "br".parse().unwrap());
        assert!(matches!(
            is_gzip(&headers),
            Err(DecodeError::UnsupportedEncoding(_))
        ));
    }
}
