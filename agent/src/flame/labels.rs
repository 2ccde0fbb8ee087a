//! Label sets of CPU profiles (`env=prod,version=1.4`) and Pyroscope's
//! application names (`shop.cpu{env=prod}`). A label set is stored in one
//! canonical form (sorted, `k=v` joined by `,`), so the same labels in another
//! order land in the same series.

use std::collections::BTreeMap;

/// Most labels on one profile: labels make series, and series are capped.
const MAX_LABELS: usize = 16;
const MAX_KEY_LEN: usize = 64;
const MAX_VALUE_LEN: usize = 128;

/// A parsed label set.
pub(crate) type Labels = BTreeMap<String, String>;

/// Parses `k=v,k=v` (empty → no labels). `field` names the parameter in errors.
pub(crate) fn parse_labels(text: &str, field: &str) -> Result<Labels, String> {
    let mut labels = Labels::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!("{field}: `{pair}` is not key=value"));
        };
        let (key, value) = (key.trim(), value.trim());
        let valid_key = !key.is_empty()
            && key.len() <= MAX_KEY_LEN
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
        if !valid_key {
            return Err(format!(
                "{field}: label key `{key}` must be 1-{MAX_KEY_LEN} letters, digits, `_`, `.` or `-`"
            ));
        }
        if value.len() > MAX_VALUE_LEN || value.contains(['=', '{', '}']) {
            return Err(format!(
                "{field}: the value of `{key}` must be at most {MAX_VALUE_LEN} bytes without `=`, `{{` or `}}`"
            ));
        }
        if labels.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(format!("{field}: label `{key}` appears twice"));
        }
        if labels.len() > MAX_LABELS {
            return Err(format!("{field}: more than {MAX_LABELS} labels"));
        }
    }
    Ok(labels)
}

/// The canonical text of a label set.
pub(crate) fn canonical(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether the stored canonical set `stored` has every label of `wanted`.
pub(crate) fn contains_all(stored: &str, wanted: &Labels) -> bool {
    if wanted.is_empty() {
        return true;
    }
    let have: BTreeMap<&str, &str> = stored
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .collect();
    wanted
        .iter()
        .all(|(k, v)| have.get(k.as_str()) == Some(&v.as_str()))
}

/// Pyroscope's `name`: `app.cpu{k=v,...}` → (service, labels). The profile
/// type suffix `.cpu` (or `.itimer`, Pyroscope's other CPU type) is dropped
/// from the service; other suffixes are not CPU profiles and are refused.
pub(crate) fn parse_pyroscope_name(name: &str) -> Result<(String, Labels), String> {
    let (app, labels) = match name.split_once('{') {
        Some((app, rest)) => {
            let Some(inner) = rest.strip_suffix('}') else {
                return Err(format!("name: `{name}` has `{{` without a closing `}}`"));
            };
            (app, parse_labels(inner, "name")?)
        }
        None => (name, Labels::new()),
    };
    let service = match app.rsplit_once('.') {
        Some((service, "cpu" | "itimer")) => service,
        Some((_, kind)) if is_known_non_cpu(kind) => {
            return Err(format!(
                "name: `{kind}` profiles are not CPU profiles; the agent stores CPU profiles only"
            ));
        }
        _ => app,
    };
    if service.is_empty() {
        return Err("name: the application name is empty".to_owned());
    }
    Ok((service.to_owned(), labels))
}

fn is_known_non_cpu(kind: &str) -> bool {
    matches!(
        kind,
        "alloc_objects"
            | "alloc_space"
            | "inuse_objects"
            | "inuse_space"
            | "goroutines"
            | "mutex_count"
            | "mutex_duration"
            | "block_count"
            | "block_duration"
            | "wall"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_are_canonical_and_validated() {
        let labels = parse_labels("version=1.4, env=prod", "labels").unwrap();
        assert_eq!(canonical(&labels), "env=prod,version=1.4");
        assert!(contains_all(
            "env=prod,version=1.4",
            &parse_labels("env=prod", "l").unwrap()
        ));
        assert!(!contains_all(
            "env=prod",
            &parse_labels("env=dev", "l").unwrap()
        ));
        assert!(contains_all("", &Labels::new()));
        for (bad, message) in [
            ("env", "`env` is not key=value"),
            ("a b=1", "label key `a b`"),
            ("a=1,a=2", "`a` appears twice"),
            ("a=x=y", "the value of `a`"),
        ] {
            let error = parse_labels(bad, "labels").unwrap_err();
            assert!(error.contains(message), "{error}");
        }
        let many: Vec<String> = (0..17).map(|i| format!("k{i}=v")).collect();
        assert!(parse_labels(&many.join(","), "labels").is_err());
    }

    #[test]
    fn pyroscope_names() {
        let (service, labels) = parse_pyroscope_name("shop.cpu{env=prod,region=eu}").unwrap();
        assert_eq!(service, "shop");
        assert_eq!(canonical(&labels), "env=prod,region=eu");
        assert_eq!(parse_pyroscope_name("shop").unwrap().0, "shop");
        assert_eq!(parse_pyroscope_name("my.app.itimer{}").unwrap().0, "my.app");
        assert!(
            parse_pyroscope_name("shop.alloc_space{}")
                .unwrap_err()
                .contains("not CPU")
        );
        assert!(
            parse_pyroscope_name("shop.cpu{env=prod")
                .unwrap_err()
                .contains("closing")
        );
        assert!(parse_pyroscope_name(".cpu").is_err());
    }
}
