//! Page URLs to route templates: `https://shop.example/products/42?ref=x#top`
//! is the page `/products/:id` of the app `shop.example`. Configured patterns
//! come first; then every segment that looks like an identifier (numbers,
//! UUIDs, long hex or base64-like tokens) becomes `:id`.

/// Longest path kept, in bytes; the rest is cut (a page name, not a payload).
const MAX_PATH_LEN: usize = 256;
/// Most segments kept; deeper paths end in `/*`.
const MAX_SEGMENTS: usize = 12;

/// One configured template: `/blog/:slug`, `/docs/*`.
#[derive(Debug, Clone)]
pub struct PagePattern {
    template: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Any,
    Rest,
}

impl PagePattern {
    /// Parses a template; the error says why it is not one.
    pub fn parse(template: &str) -> Result<Self, String> {
        let Some(rest) = template.strip_prefix('/') else {
            return Err("a pattern starts with /".into());
        };
        if template.contains(['?', '#']) {
            return Err("a pattern is a path, without query or fragment".into());
        }
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            segments.push(match *part {
                "*" if i + 1 == parts.len() => Segment::Rest,
                "*" => return Err("`*` may only be the last segment".into()),
                p if p.starts_with(':') && p.len() > 1 => Segment::Any,
                "" => return Err("empty segment (`//`)".into()),
                p if p.starts_with(':') => return Err("`:` needs a name".into()),
                p => Segment::Literal(p.to_owned()),
            });
        }
        Ok(Self {
            template: template.to_owned(),
            segments,
        })
    }

    fn matches(&self, parts: &[&str]) -> bool {
        let mut i = 0;
        for segment in &self.segments {
            match segment {
                Segment::Rest => return true,
                Segment::Any if i < parts.len() => {}
                Segment::Literal(l) if parts.get(i) == Some(&l.as_str()) => {}
                _ => return false,
            }
            i += 1;
        }
        i == parts.len()
    }
}

/// Turns page URLs into `(app, page)`.
#[derive(Debug, Clone, Default)]
pub struct PageNormalizer {
    patterns: Vec<PagePattern>,
}

impl PageNormalizer {
    /// With the configured templates (already validated).
    pub fn new(patterns: &[String]) -> Self {
        Self {
            patterns: patterns
                .iter()
                .filter_map(|p| PagePattern::parse(p).ok())
                .collect(),
        }
    }

    /// `(host, template)` of an absolute URL, or the template of a bare path
    /// (host `None`). `None` when it is neither.
    pub fn normalize(&self, url: &str) -> Option<(Option<String>, String)> {
        let (host, path) = if url.starts_with('/') {
            (None, url.to_owned())
        } else {
            let parsed = url::Url::parse(url).ok()?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return None;
            }
            let host = parsed.host_str()?.to_ascii_lowercase();
            let host = match parsed.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            };
            (Some(host), parsed.path().to_owned())
        };
        let path = path.split(['?', '#']).next().unwrap_or("/");
        let mut parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if let Some(pattern) = self.patterns.iter().find(|p| p.matches(&parts)) {
            return Some((host, pattern.template.clone()));
        }
        let deep = parts.len() > MAX_SEGMENTS;
        parts.truncate(MAX_SEGMENTS);
        let mut page = String::with_capacity(path.len().min(MAX_PATH_LEN) + 4);
        for part in parts {
            page.push('/');
            if looks_like_id(part) {
                page.push_str(":id");
            } else {
                page.push_str(&part.to_ascii_lowercase());
            }
        }
        if deep {
            page.push_str("/*");
        }
        if page.is_empty() {
            page.push('/');
        }
        if page.len() > MAX_PATH_LEN {
            let mut cut = MAX_PATH_LEN;
            while !page.is_char_boundary(cut) {
                cut -= 1;
            }
            page.truncate(cut);
        }
        Some((host, page))
    }
}

/// Numbers, UUIDs, hashes and other machine-made tokens. Words (even with
/// dashes, like `running-shoes`) stay.
fn looks_like_id(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    if digits == bytes.len() {
        return true;
    }
    let hex = bytes
        .iter()
        .all(|b| b.is_ascii_hexdigit() || *b == b'-' || *b == b'_');
    let is_uuid = bytes.len() == 36
        && hex
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| (*b == b'-') == matches!(i, 8 | 13 | 18 | 23));
    if is_uuid {
        return true;
    }
    // A hex hash (git, md5, sha) with at least one digit.
    if bytes.len() >= 8 && bytes.iter().all(u8::is_ascii_hexdigit) && digits > 0 {
        return true;
    }
    // Base64-ish tokens (long, with several digits) and mostly-digit codes.
    let token = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-');
    (token && bytes.len() >= 16 && digits >= 3) || (bytes.len() >= 4 && digits * 2 > bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(normalizer: &PageNormalizer, url: &str) -> String {
        normalizer.normalize(url).unwrap().1
    }

    #[test]
    fn query_fragment_and_ids_are_dropped() {
        let n = PageNormalizer::default();
        assert_eq!(
            n.normalize("https://Shop.Example/products/42?ref=x#top"),
            Some((Some("shop.example".into()), "/products/:id".into()))
        );
        assert_eq!(
            n.normalize("http://127.0.0.1:8080/"),
            Some((Some("127.0.0.1:8080".into()), "/".into()))
        );
        assert_eq!(
            page(&n, "/orders/3f2b9c1e-8a4d-4c3b-9e2f-1a2b3c4d5e6f/items/7"),
            "/orders/:id/items/:id"
        );
        assert_eq!(
            page(&n, "/commit/9fceb02d0ae598e95dc970b74767f19372d61af8"),
            "/commit/:id"
        );
        assert_eq!(page(&n, "/s/aZ3kP9qL2mX7vB1n"), "/s/:id");
        assert_eq!(
            page(&n, "/category/running-shoes"),
            "/category/running-shoes"
        );
        assert_eq!(page(&n, "/Blog/Hello-World/"), "/blog/hello-world");
        assert_eq!(page(&n, "/v2/api"), "/v2/api");
    }

    #[test]
    fn configured_patterns_win_in_order() {
        let n = PageNormalizer::new(&["/blog/:slug".into(), "/docs/*".into(), "/".into()]);
        assert_eq!(page(&n, "/blog/my-first-post"), "/blog/:slug");
        assert_eq!(
            page(&n, "/blog/my-first-post/comments"),
            "/blog/my-first-post/comments"
        );
        assert_eq!(page(&n, "/docs/a/b/c"), "/docs/*");
        assert_eq!(page(&n, "/"), "/");
    }

    #[test]
    fn bad_patterns_say_why() {
        assert!(PagePattern::parse("blog").is_err());
        assert!(PagePattern::parse("/a/*/b").is_err());
        assert!(PagePattern::parse("/a//b").is_err());
        assert!(PagePattern::parse("/a?b").is_err());
    }

    #[test]
    fn not_a_page_url() {
        let n = PageNormalizer::default();
        assert_eq!(n.normalize("javascript:alert(1)"), None);
        assert_eq!(n.normalize("products"), None);
    }

    #[test]
    fn long_and_deep_paths_are_bounded() {
        let n = PageNormalizer::default();
        let deep = "/a".repeat(40);
        assert!(page(&n, &deep).ends_with("/*"));
        let long = format!("/{}", "word".repeat(200));
        assert!(page(&n, &long).len() <= MAX_PATH_LEN);
    }
}
