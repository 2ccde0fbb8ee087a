use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::config::{CheckKind, EMBEDDED_DEFAULT, ProbeSpec};

fn load(text: &str) -> Result<ValidConfig, ConfigError> {
    load_str(text, "test.toml", &NoEnv)
}

fn load_env(text: &str, vars: &[(&str, &str)]) -> Result<ValidConfig, ConfigError> {
    let env: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    load_str(text, "test.toml", &env)
}

#[test]
fn embedded_default_runs_disk_and_memory_checks_on_documented_listeners() {
    let config = load(EMBEDDED_DEFAULT).unwrap();
    let kinds: Vec<_> = config
        .checks
        .iter()
        .map(|c| (c.name.as_str(), c.kind, c.critical))
        .collect();
    assert_eq!(
        kinds,
        [
            ("disk", CheckKind::Disk, true),
            ("memory", CheckKind::Memory, false)
        ]
    );
    assert_eq!(config.raw.listeners.public.to_string(), "0.0.0.0:8686");
    assert_eq!(config.raw.listeners.admin.to_string(), "127.0.0.1:8687");
    assert!(config.raw.listeners.agent_check.is_none());
    let disk = &config.checks[0];
    assert_eq!(disk.schedule.interval, Duration::from_secs(5));
    assert_eq!(disk.schedule.timeout, Duration::from_secs(1));
    assert_eq!((disk.schedule.rise, disk.schedule.fall), (2, 3));
}

#[test]
fn unknown_key_names_the_full_key_its_line_and_a_suggestion() {
    let err = load("[health]\ninterval = \"2s\"\n\n[health.chekcs.db]\nkind = \"postgres\"\n")
        .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("health.chekcs"));
    assert_eq!(err.line(), Some(4));
    assert_eq!(err.advice.as_deref(), Some("did you mean `checks`?"));
    let shown = err.to_string();
    assert!(shown.contains("unknown key `chekcs`"), "{shown}");
    assert!(shown.contains("test.toml, line 4"), "{shown}");
}

#[test]
fn unknown_key_inside_a_check_is_refused_with_its_line() {
    let err = load("[health.checks.db]\nkind = \"postgres\"\nurl = \"postgres://h/db\"\nquerry = \"SELECT 1\"\n").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("health.checks.db.querry"));
    assert_eq!(err.line(), Some(4));
    assert_eq!(err.advice.as_deref(), Some("did you mean `query`?"));
}

#[test]
fn unknown_kind_suggests_the_closest() {
    let err =
        load("[health.checks.db]\nkind = \"postgress\"\nurl = \"postgres://h/db\"\n").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("health.checks.db.kind"));
    assert_eq!(err.line(), Some(2));
    assert_eq!(err.advice.as_deref(), Some("did you mean `postgres`?"));
}

#[test]
fn bad_duration_names_key_and_line() {
    let err = load("[health]\nrise = 2\ntimeout = \"fast\"\n").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("health.timeout"));
    assert_eq!(err.line(), Some(3));
}

#[test]
fn bad_url_names_key_and_line_without_echoing_it() {
    let err =
        load("[health.checks.cache]\nkind = \"redis\"\nurl = \"::user:hunter2@\"\n").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("health.checks.cache.url"));
    assert_eq!(err.line(), Some(3));
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn url_of_the_wrong_scheme_is_refused() {
    let err = load("[health.checks.db]\nkind = \"postgres\"\nurl = \"mysql://root@h/test\"\n")
        .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("health.checks.db.url"));
    assert_eq!(err.line(), Some(3));
    assert!(err.advice.unwrap().contains("`postgres:`"));
}

#[test]
fn bad_thresholds_are_refused() {
    let err = load(
        "[health.checks.d]\nkind = \"disk\"\nwarn_used_percent = 95\nfail_used_percent = 90\n",
    )
    .unwrap_err();
    assert_eq!(
        err.key.as_deref(),
        Some("health.checks.d.warn_used_percent")
    );
    assert_eq!(err.line(), Some(3));

    let err = load("[health.checks.d]\nkind = \"disk\"\nfail_used_percent = 120\n").unwrap_err();
    assert_eq!(
        err.key.as_deref(),
        Some("health.checks.d.fail_used_percent")
    );

    for size in ["512B", "2GiB"] {
        let err = load(&format!("[ingest]\nmax_request_size = \"{size}\"\n")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("ingest.max_request_size"), "{err}");
        assert_eq!(err.line(), Some(2), "{err}");
    }

    let err = load("[health]\nfall = 0\n").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("health.fall"));
    assert_eq!(err.line(), Some(2));
}

#[test]
fn timeout_longer_than_interval_is_refused() {
    let err = load("[health.checks.db]\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\ninterval = \"1s\"\ntimeout = \"2s\"\n").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("health.checks.db.timeout"));
    assert_eq!(err.line(), Some(5));
}

#[test]
fn key_of_another_kind_is_refused() {
    let err =
        load("[health.checks.db]\nkind = \"postgres\"\nurl = \"postgres://h/db\"\npath = \"/\"\n")
            .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("health.checks.db.path"));
    assert_eq!(err.line(), Some(4));
}

#[test]
fn admin_beyond_loopback_requires_a_token() {
    let err = load("[listeners]\nadmin = \"0.0.0.0:8687\"\n").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("listeners.admin"));
    assert_eq!(err.line(), Some(2));
    let ok =
        load("[listeners]\nadmin = \"0.0.0.0:8687\"\n[admin]\ntoken = \"0123456789abcdef0123\"\n");
    assert!(ok.is_ok());
}

#[test]
fn env_overrides_set_nested_keys_and_are_named_in_errors() {
    let config = load_env(
        "[health]\ninterval = \"5s\"\n",
        &[
            ("TELLTALE_HEALTH__INTERVAL", "7s"),
            ("TELLTALE_LISTENERS__PUBLIC", "127.0.0.1:9000"),
            ("TELLTALE_HEALTH__CHECKS__CACHE__KIND", "redis"),
            (
                "TELLTALE_HEALTH__CHECKS__CACHE__URL",
                "redis://:pw123@127.0.0.1:6379/",
            ),
            ("TELLTALE_LOG", "debug"),
        ],
    )
    .unwrap();
    assert_eq!(config.raw.health.interval, Duration::from_secs(7));
    assert_eq!(config.raw.listeners.public.to_string(), "127.0.0.1:9000");
    let cache = config.checks.iter().find(|c| c.name == "cache").unwrap();
    assert!(matches!(cache.probe, ProbeSpec::Redis { .. }));
    assert_eq!(
        config.redactor.redact("auth pw123 failed"),
        "auth *** failed"
    );

    let err = load_env("", &[("TELLTALE_HEALTH__TIMEOUT", "soon")]).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("health.timeout"));
    assert_eq!(
        err.location,
        Some(Location::Env("TELLTALE_HEALTH__TIMEOUT".into()))
    );
}

#[test]
fn effective_config_never_prints_secrets() {
    let config = load(
        "[admin]\ntoken = \"0123456789abcdef-secret\"\n[health.checks.db]\nkind = \"postgres\"\nurl = \"postgres://app:hunter2@db/shop\"\n",
    )
    .unwrap();
    let printed = config.to_redacted_toml();
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(!printed.contains("0123456789abcdef-secret"), "{printed}");
    assert!(printed.contains("postgres://app:***@db/shop"), "{printed}");
}

#[test]
fn invalid_toml_names_the_line() {
    let err = load("[health]\ninterval = \n").unwrap_err();
    assert_eq!(err.line(), Some(2));
}

#[test]
fn duplicate_ports_are_refused() {
    let err =
        load("[listeners]\npublic = \"127.0.0.1:9000\"\nadmin = \"127.0.0.1:9000\"\n").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("listeners.admin"));
}

#[test]
fn reference_config_documents_exactly_the_defaults() {
    let reference = load(include_str!("../../../../examples/telltale.toml")).unwrap();
    let default = load(EMBEDDED_DEFAULT).unwrap();
    // The effective checks (thresholds filled in) and every other section agree.
    assert_eq!(
        format!("{:?}", reference.checks),
        format!("{:?}", default.checks)
    );
    let others = |c: &ValidConfig| {
        let r = &c.raw;
        format!(
            "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
            r.flame,
            r.listeners,
            r.admin,
            r.agent_check,
            r.shutdown,
            r.ingest,
            r.signals,
            r.alerts,
            r.upstream,
        ) + &format!("{:?}", r.rum)
    };
    assert_eq!(others(&reference), others(&default));
    let schedule = |c: &ValidConfig| {
        (
            c.raw.health.interval,
            c.raw.health.timeout,
            c.raw.health.rise,
            c.raw.health.fall,
        )
    };
    assert_eq!(schedule(&reference), schedule(&default));
}

#[test]
fn reserved_check_names_are_refused() {
    let err = load("[health.checks.ready]\nkind = \"memory\"\n").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("health.checks.ready"));
    assert_eq!(err.line(), Some(1));
}

#[test]
fn bad_alert_rules_are_refused_with_their_key() {
    let err = load("[alerts]\nevaluate_every = \"0s\"\n").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("alerts.evaluate_every"));
    assert_eq!(err.line(), Some(2));

    let rule = "[[alerts.rules]]\nname = \"slow\"\nsignal = \"latency_p95\"\nabove = 0.5\n";
    let err = load(&format!("{rule}window = \"2m\"\n")).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("alerts.rules.0.window"));
    assert_eq!(err.line(), Some(5));

    let err = load(&format!("{rule}{rule}")).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("alerts.rules.1.name"));

    let err =
        load("[[alerts.rules]]\nname = \"x\"\nsignal = \"latency_p42\"\nabove = 1\n").unwrap_err();
    assert!(err.to_string().contains("latency_p42"), "{err}");
}

#[test]
fn bad_rum_settings_are_refused_with_their_key() {
    for (text, key, line) in [
        ("[rum]\npath = \"/health/rum\"\n", "rum.path", 2),
        ("[rum]\nscript_path = \"/rum\"\n", "rum.script_path", 0),
        (
            "[rum]\nallowed_origins = [\"https://a.example/path\"]\n",
            "rum.allowed_origins.0",
            2,
        ),
        (
            "[rum]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
            "rum.trusted_proxies.0",
            2,
        ),
        ("[rum]\nclient_rate = 0\n", "rum.client_rate", 2),
        ("[rum]\nmax_pages = 0\n", "rum.max_pages", 2),
        (
            "[rum]\npage_patterns = [\"/a\", \"/a/*/b\"]\n",
            "rum.page_patterns.1",
            2,
        ),
        ("[rum]\nretention = \"10m\"\n", "rum.retention", 2),
        ("[rum]\nmax_body_size = \"100B\"\n", "rum.max_body_size", 2),
    ] {
        let err = load(text).unwrap_err();
        assert_eq!(err.key.as_deref(), Some(key), "{text}: {err}");
        if line > 0 {
            assert_eq!(err.line(), Some(line), "{text}: {err}");
        }
    }
    let ok = load(
        "[rum]\nallowed_origins = [\"*\", \"http://127.0.0.1:8080\"]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\npage_patterns = [\"/blog/:slug\", \"/docs/*\"]\n",
    );
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn bad_flame_settings_are_refused_with_their_key() {
    for (text, key) in [
        ("[flame]\nbucket = \"1500ms\"\n", "flame.bucket"),
        ("[flame]\nretention = \"5s\"\n", "flame.retention"),
        ("[flame]\nrollup_bucket = \"25s\"\n", "flame.rollup_bucket"),
        ("[flame]\nrollup_bucket = \"5s\"\n", "flame.rollup_bucket"),
        ("[flame]\nrollup_after = \"5s\"\n", "flame.rollup_after"),
        ("[flame]\nmax_stacks = 0\n", "flame.max_stacks"),
    ] {
        let err = load(text).unwrap_err();
        assert_eq!(err.key.as_deref(), Some(key), "{text}: {err}");
        assert_eq!(err.line(), Some(2), "{text}: {err}");
    }
    // Equal widths turn the roll-up off.
    let off = load("[flame]\nrollup_bucket = \"10s\"\n");
    assert!(off.is_ok(), "{off:?}");
}

#[test]
fn runtime_threads_default_to_half_the_cores_and_are_bounded() {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let default = load(EMBEDDED_DEFAULT).unwrap();
    assert_eq!(default.raw.runtime.worker_threads(), (cores / 2).max(1));
    assert_eq!(crate::config::half_the_cores(), (cores / 2).max(1));
    let set = load("[runtime]\nworker_threads = 3\n").unwrap();
    assert_eq!(set.raw.runtime.worker_threads(), 3);
    for text in [
        "[runtime]\nworker_threads = 0\n",
        "[runtime]\nworker_threads = 257\n",
    ] {
        let err = load(text).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("runtime.worker_threads"), "{err}");
        assert_eq!(err.line(), Some(2), "{err}");
    }
    let env = load_env("", &[("TELLTALE_RUNTIME__WORKER_THREADS", "2")]).unwrap();
    assert_eq!(env.raw.runtime.worker_threads(), 2);
}
