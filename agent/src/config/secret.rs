//! Values that must never reach a response, a log line or `check-config` output:
//! bearer tokens and connection URLs carrying passwords.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

/// What a secret prints as, everywhere.
pub const REDACTED: &str = "***";

/// A secret string (a bearer token). `Debug`, `Display` and `Serialize` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself: call only where it is compared or sent to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// A connection URL (database, cache, HTTP endpoint) whose password is hidden
/// whenever it is printed or serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn(Url);

impl Dsn {
    /// The full URL, password included: for the driver only.
    pub fn expose(&self) -> &Url {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        let mut url = self.0.clone();
        if url.password().is_some() {
            // Cannot fail: a URL that has a password can have it replaced.
            let _ = url.set_password(Some(REDACTED));
        }
        url.to_string()
    }

    /// The password, if the URL has one; used to scrub driver error messages.
    pub fn password(&self) -> Option<String> {
        self.0.password().map(|p| {
            // Passwords are percent-encoded in URLs; drivers may echo either form.
            percent_decode(p)
        })
    }
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("p={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_owned())
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for Dsn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for Dsn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        // The parse error never echoes the text back: it may hold a password.
        Url::parse(&text)
            .map(Dsn)
            .map_err(|e| serde::de::Error::custom(format!("not a valid URL ({e})")))
    }
}

/// Scrubs secrets out of free text (driver errors, probe outputs) before it is
/// shown or logged: every known secret, and the user-info part of any URL.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor that also hides these exact values wherever they appear.
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 3).collect();
        // Longest first, so a secret containing another is hidden whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    /// The text with secrets replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = hide_url_credentials(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }
}

/// Replaces `user:password@` in anything shaped like `scheme://user:password@host`.
fn hide_url_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(idx) = rest.find("://") {
        let (head, tail) = rest.split_at(idx + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                let user_info = &authority[..at];
                match user_info.split_once(':') {
                    Some((user, _password)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(REDACTED);
                    }
                    None => out.push_str(user_info),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_prints_without_password() {
        let dsn: Dsn = serde_json::from_str("\"postgres://app:s3cr%40t@db:5432/shop\"").unwrap();
        assert_eq!(dsn.redacted(), "postgres://app:***@db:5432/shop");
        assert_eq!(format!("{dsn:?}"), "postgres://app:***@db:5432/shop");
        assert_eq!(
            serde_json::to_string(&dsn).unwrap(),
            "\"postgres://app:***@db:5432/shop\""
        );
        assert_eq!(dsn.password().as_deref(), Some("s3cr@t"));
    }

    #[test]
    fn invalid_dsn_error_does_not_echo_the_text() {
        let err = serde_json::from_str::<Dsn>("\"::hunter2::\"").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn redactor_hides_url_credentials_and_known_secrets() {
        let redactor = Redactor::new(["hunter2".to_owned()]);
        let text = "error connecting to mysql://root:pw@10.0.0.1:3306/db; token hunter2 refused";
        assert_eq!(
            redactor.redact(text),
            "error connecting to mysql://root:***@10.0.0.1:3306/db; token *** refused"
        );
        assert_eq!(
            redactor.redact("redis://cache:6379/"),
            "redis://cache:6379/"
        );
        assert_eq!(redactor.redact("http://user@host/"), "http://user@host/");
    }

    #[test]
    fn secret_never_prints() {
        let secret = Secret::new("abc123");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"***\"");
    }
}
