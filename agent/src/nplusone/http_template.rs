//! Outbound HTTP calls to templates: method, host and path with numeric,
//! UUID and hash-like segments parameterised, the query string reduced to its
//! sorted keys. `GET https://api/users/42?b=1&a=2` → `GET api/users/{id}?a&b`.

use url::Url;

/// A call's template and its exact form (to tell identical calls apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    /// `METHOD host[:port]/path?keys`.
    pub template: String,
    /// `METHOD url`, unchanged.
    pub exact: String,
}

/// The template of a call to `url` (an absolute URL), or `None` when the
/// URL cannot be parsed. `server_address` stands in for a missing host.
pub fn http_call(method: &str, url: &str, server_address: Option<&str>) -> Option<HttpCall> {
    let parsed = Url::parse(url).ok()?;
    let host = parsed.host_str().or(server_address)?;
    let method = method.to_ascii_uppercase();
    let mut template = format!("{method} {}", host.to_ascii_lowercase());
    if let Some(port) = parsed.port() {
        template.push_str(&format!(":{port}"));
    }
    template.push_str(&path_template(parsed.path()));
    let mut keys: Vec<String> = parsed.query_pairs().map(|(k, _)| k.into_owned()).collect();
    keys.sort();
    keys.dedup();
    if !keys.is_empty() {
        template.push('?');
        template.push_str(&keys.join("&"));
    }
    Some(HttpCall {
        template,
        exact: format!("{method} {url}"),
    })
}

/// `/users/42/orders/9f1c...` → `/users/{id}/orders/{hash}`.
pub fn path_template(path: &str) -> String {
    if path.is_empty() || path == "/" {
        return "/".to_owned();
    }
    let mut out = String::with_capacity(path.len());
    for segment in path.trim_start_matches('/').split('/') {
        out.push('/');
        out.push_str(segment_template(segment));
    }
    out
}

fn segment_template(segment: &str) -> &str {
    if segment.is_empty() {
        return segment;
    }
    if segment.bytes().all(|b| b.is_ascii_digit()) {
        return "{id}";
    }
    if is_uuid(segment) {
        return "{uuid}";
    }
    if looks_like_hash(segment) {
        return "{hash}";
    }
    segment
}

fn is_uuid(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Hex of 16+ characters (digests, object ids), or a long token mixing
/// letters and digits (ULIDs, base64 ids): values, not names.
fn looks_like_hash(s: &str) -> bool {
    let hex = s.len() >= 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let token = s.len() >= 20
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes().any(|b| b.is_ascii_alphabetic());
    hex || token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_uuids_and_hashes_are_parameterised_and_query_keys_sorted() {
        let cases = [
            (
                "GET",
                "http://pricing.internal:8080/v1/price/42",
                "GET pricing.internal:8080/v1/price/{id}",
            ),
            (
                "get",
                "https://API.example.com/users/7/orders/19?page=2&limit=5&page=3",
                "GET api.example.com/users/{id}/orders/{id}?limit&page",
            ),
            (
                "POST",
                "http://svc/items/3f2b8c1e-9d4a-4b6f-8e2a-1c3d5e7f9a0b/tags",
                "POST svc/items/{uuid}/tags",
            ),
            (
                "GET",
                "http://cdn/blobs/9f86d081884c7d659a2feaa0c55ad015",
                "GET cdn/blobs/{hash}",
            ),
            (
                "GET",
                "http://svc/users/01ARZ3NDEKTSV4RRFFQ69G5FAV",
                "GET svc/users/{hash}",
            ),
            (
                "GET",
                "http://svc/users/me/settings",
                "GET svc/users/me/settings",
            ),
            ("GET", "http://svc", "GET svc/"),
            ("GET", "http://svc/v2/", "GET svc/v2/"),
        ];
        for (method, url, expected) in cases {
            assert_eq!(
                http_call(method, url, None).unwrap().template,
                expected,
                "{url}"
            );
        }
    }

    #[test]
    fn exact_form_keeps_the_values() {
        let a = http_call("GET", "http://svc/users/1", None).unwrap();
        let b = http_call("GET", "http://svc/users/2", None).unwrap();
        assert_eq!(a.template, b.template);
        assert_ne!(a.exact, b.exact);
    }

    #[test]
    fn unparsable_urls_have_no_template() {
        assert_eq!(http_call("GET", "/relative/path", None), None);
        assert_eq!(http_call("GET", "not a url", Some("svc")), None);
    }
}
