//! N+1 detection in one assembled trace: under one parent span, at least N
//! CLIENT calls with the same template (SQL statements to a SQL database, or
//! outbound HTTP calls), sequential or overlapping. Calls repeated with
//! identical parameters are a caching opportunity, reported as a different
//! kind. A statement that already batches (an `IN`/`VALUES` list of several
//! values) is never flagged: repeating it is chunking, not N+1.

use std::collections::HashSet;
use std::sync::Arc;

// foldhash, not SipHash: these maps are filled for every completed trace,
// keyed by span ids and statement text, and std's hasher was a tenth of the
// detector's cost.
use foldhash::{HashMap, HashMapExt};
use serde::Serialize;

use super::http_template::http_call;
use super::normalize::{NormalizedSql, Parameters, SqlDialect, SqlSkip, normalize_sql};
use crate::traces::{AssembledSpan, AssembledTrace, Kind};

/// `db.system.name` values whose statements are SQL. Others (Redis commands,
/// MongoDB filters...) have no SQL template to compare.
const SQL_SYSTEMS: &[&str] = &[
    "postgresql",
    "mysql",
    "mariadb",
    "sqlite",
    "mssql",
    "microsoft.sql_server",
    "oracle",
    "oracle.db",
    "db2",
    "ibm.db2",
    "cockroachdb",
    "h2",
    "hsqldb",
    "derby",
    "clickhouse",
    "trino",
    "spanner",
    "gcp.spanner",
    "redshift",
    "aws.redshift",
    "tidb",
    "other_sql",
];

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// The same statement with different parameters, once per item.
    NPlusOneQuery,
    /// The same endpoint with different ids, once per item.
    NPlusOneHttp,
    /// The very same statement and parameters again and again.
    RepeatedQuery,
    /// The very same URL again and again.
    RepeatedHttp,
}

impl FindingKind {
    /// Every kind.
    pub const ALL: [Self; 4] = [
        Self::NPlusOneQuery,
        Self::NPlusOneHttp,
        Self::RepeatedQuery,
        Self::RepeatedHttp,
    ];

    /// The label and API value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NPlusOneQuery => "n_plus_one_query",
            Self::NPlusOneHttp => "n_plus_one_http",
            Self::RepeatedQuery => "repeated_query",
            Self::RepeatedHttp => "repeated_http",
        }
    }

    /// Parses the API value.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The fix to consider.
    pub fn fix(self, has_source: bool) -> &'static str {
        match (self, has_source) {
            (Self::NPlusOneQuery, true) => {
                "eager load: fetch the related rows with the source query (JOIN or ORM prefetch) instead of one query per row"
            }
            (Self::NPlusOneQuery, false) => {
                "batch: one query with `IN (...)` / `= ANY($1)` over every id instead of one query per id"
            }
            (Self::NPlusOneHttp, _) => {
                "batch: call a bulk endpoint once (or fetch concurrently) instead of one call per item"
            }
            (Self::RepeatedQuery | Self::RepeatedHttp, _) => {
                "cache: the same call with the same parameters repeats; keep its result for the request"
            }
        }
    }
}

/// Detection settings.
#[derive(Debug, Clone)]
pub struct DetectConfig {
    /// Calls with one template under one parent that make a finding.
    pub min_repeats: usize,
    /// Their total duration must reach this.
    pub min_total_nanos: u64,
    /// Templates never reported.
    pub ignore: HashSet<String>,
}

/// One pattern found in one trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// What it is.
    pub kind: FindingKind,
    /// The calling service.
    pub service: Arc<str>,
    /// The route of the request it happened in.
    pub route: String,
    /// The repeated template.
    pub template: String,
    /// The different query (or call) right before the repeats: the "1".
    pub source_template: Option<String>,
    /// `db.system.name`, or `http`.
    pub system: String,
    /// Repeats.
    pub count: u64,
    /// Their summed duration.
    pub total_nanos: u64,
    /// The mean duration of one.
    pub per_call_nanos: u64,
    /// What batching would save: the wall time the repeats cover minus the
    /// longest one (one batched call takes about as long as one call).
    pub saved_nanos: u64,
    /// The parent span's id.
    pub parent_span_id: u64,
    /// The parent span's name, when it arrived.
    pub parent_name: String,
    /// The repeated spans.
    pub span_ids: Vec<u64>,
}

/// What detection skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Statements cut short by the SDK.
    pub truncated: u64,
    /// Statements with nothing in them.
    pub empty: u64,
}

/// Normalised statements by dialect, then text, so a parameterised statement
/// repeated across traces is tokenised once (and looked up without copying
/// its text). Cleared when full, which is cheap and keeps the hot statements
/// after a moment. Entries are shared, so a hit costs a reference count, not
/// a copy of the template.
#[derive(Debug, Default)]
pub struct NormalizeCache {
    by_dialect: HashMap<SqlDialect, HashMap<Box<str>, Normalized>>,
    len: usize,
}

type Normalized = Result<Arc<NormalizedSql>, SqlSkip>;

/// Distinct statements the cache holds at most.
const CACHE_CAPACITY: usize = 4_096;

impl NormalizeCache {
    fn normalize(&mut self, text: &str, dialect: SqlDialect) -> Normalized {
        if let Some(hit) = self.by_dialect.get(&dialect).and_then(|m| m.get(text)) {
            return hit.clone();
        }
        let result = normalize_sql(text, dialect).map(Arc::new);
        // Inline literals make every text unique: caching those only evicts the rest.
        if !matches!(&result, Ok(n) if matches!(n.parameters, Parameters::Literals(_))) {
            if self.len >= CACHE_CAPACITY {
                self.by_dialect.clear();
                self.len = 0;
            }
            self.by_dialect
                .entry(dialect)
                .or_default()
                .insert(text.into(), result.clone());
            self.len += 1;
        }
        result
    }
}

/// A call as detection sees it.
#[derive(Debug)]
struct Call<'a> {
    span: &'a AssembledSpan,
    template: Template,
    /// Tells identical calls apart: the literal hash, the exact URL...
    identity: Identity,
    batched: bool,
    is_db: bool,
    system: &'a str,
}

/// A call's template: a statement's from the normalisation cache, or a URL's.
#[derive(Debug)]
enum Template {
    Sql(Arc<NormalizedSql>),
    Http(String),
}

impl Template {
    fn as_str(&self) -> &str {
        match self {
            Self::Sql(sql) => &sql.template,
            Self::Http(url) => url,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    /// Parameters unknown (placeholders): never "identical".
    Unknown,
    /// No parameters at all.
    Constant,
    /// Literal values' hash.
    Literals(u64),
    /// The exact URL.
    Url(String),
}

fn is_call(span: &AssembledSpan) -> bool {
    span.kind == Kind::Client
}

/// Finds every N+1 and repeated-call pattern in `trace`.
pub fn detect(
    trace: &AssembledTrace,
    config: &DetectConfig,
    cache: &mut NormalizeCache,
) -> (Vec<Detection>, Skipped) {
    let mut skipped = Skipped::default();
    // Children by parent: only CLIENT spans with a parent can repeat under one.
    let mut by_parent: HashMap<u64, Vec<&AssembledSpan>> = HashMap::new();
    for span in trace.spans.iter().filter(|s| is_call(s)) {
        if let Some(parent) = span.parent_id() {
            by_parent.entry(parent).or_default().push(span);
        }
    }
    let mut detections = Vec::new();
    let mut index: Option<HashMap<u64, &AssembledSpan>> = None;
    for (parent, children) in by_parent {
        // Cheap bound first: fewer calls than N under a parent cannot repeat N times.
        if children.len() < config.min_repeats {
            continue;
        }
        let mut calls: Vec<Call<'_>> = children
            .into_iter()
            .filter_map(|span| classify(span, cache, &mut skipped))
            .collect();
        calls.sort_by_key(|c| (c.span.start_unix_nanos, c.span.span_id));
        let mut groups: HashMap<(&str, bool), Vec<usize>> = HashMap::new();
        for (i, call) in calls.iter().enumerate() {
            groups
                .entry((call.template.as_str(), call.is_db))
                .or_default()
                .push(i);
        }
        for ((template, is_db), members) in groups {
            if members.len() < config.min_repeats
                || members.iter().any(|i| calls[*i].batched)
                || config.ignore.contains(template)
            {
                continue;
            }
            let spans: Vec<&AssembledSpan> = members.iter().map(|i| calls[*i].span).collect();
            let total_nanos: u64 = spans.iter().map(|s| s.duration_nanos()).sum();
            if total_nanos < config.min_total_nanos {
                continue;
            }
            let first = &calls[members[0]];
            let identical = match &first.identity {
                Identity::Unknown => false,
                identity => members.iter().all(|i| calls[*i].identity == *identity),
            };
            let kind = match (is_db, identical) {
                (true, false) => FindingKind::NPlusOneQuery,
                (true, true) => FindingKind::RepeatedQuery,
                (false, false) => FindingKind::NPlusOneHttp,
                (false, true) => FindingKind::RepeatedHttp,
            };
            // The "1": the last different call of the same sort that started
            // before the first repeat.
            let source_template = calls[..members[0]]
                .iter()
                .rev()
                .find(|c| c.is_db == is_db && c.template.as_str() != template)
                .map(|c| c.template.as_str().to_owned());
            let index =
                index.get_or_insert_with(|| trace.spans.iter().map(|s| (s.span_id, s)).collect());
            let parent_span = index.get(&parent).copied();
            let count = spans.len() as u64;
            let longest = spans.iter().map(|s| s.duration_nanos()).max().unwrap_or(0);
            detections.push(Detection {
                kind,
                service: Arc::clone(&first.span.service),
                route: route_of(trace, index, parent_span),
                template: template.to_owned(),
                source_template,
                system: first.system.to_owned(),
                count,
                total_nanos,
                per_call_nanos: total_nanos / count,
                saved_nanos: covered_nanos(&spans).saturating_sub(longest),
                parent_span_id: parent,
                parent_name: parent_span.map(|p| p.name().to_owned()).unwrap_or_default(),
                span_ids: spans.iter().map(|s| s.span_id).collect(),
            });
        }
    }
    detections
        .sort_by(|a, b| (a.parent_span_id, &a.template).cmp(&(b.parent_span_id, &b.template)));
    (detections, skipped)
}

fn classify<'a>(
    span: &'a AssembledSpan,
    cache: &mut NormalizeCache,
    skipped: &mut Skipped,
) -> Option<Call<'a>> {
    if let Some(system) = span.str_attribute("db.system.name") {
        if !SQL_SYSTEMS.contains(&system) {
            return None;
        }
        let text = span.str_attribute("db.query.text")?;
        if span.truncated_attribute && text.len() >= crate::traces::MAX_ATTRIBUTE_BYTES - 4 {
            skipped.truncated += 1;
            return None;
        }
        let normalized = match cache.normalize(text, SqlDialect::of_system(system)) {
            Ok(n) => n,
            Err(SqlSkip::Truncated) => {
                skipped.truncated += 1;
                return None;
            }
            Err(SqlSkip::Empty) => {
                skipped.empty += 1;
                return None;
            }
        };
        let identity = match normalized.parameters {
            Parameters::None => Identity::Constant,
            Parameters::Placeholders => Identity::Unknown,
            Parameters::Literals(hash) => Identity::Literals(hash),
        };
        return Some(Call {
            span,
            identity,
            batched: normalized.batched,
            template: Template::Sql(normalized),
            is_db: true,
            system,
        });
    }
    let method = span.str_attribute("http.request.method")?;
    let url = span.str_attribute("url.full")?;
    let call = http_call(method, url, span.str_attribute("server.address"))?;
    Some(Call {
        span,
        template: Template::Http(call.template),
        identity: Identity::Url(call.exact),
        batched: false,
        is_db: false,
        system: "http",
    })
}

/// The route of the request the parent belongs to: the nearest SERVER or
/// CONSUMER ancestor's `http.route` (else its name), else the root's. The walk
/// is bounded by the span count, so a cycle in parent ids ends it.
fn route_of(
    trace: &AssembledTrace,
    index: &HashMap<u64, &AssembledSpan>,
    parent: Option<&AssembledSpan>,
) -> String {
    let mut current = parent;
    for _ in 0..trace.spans.len() {
        let Some(span) = current else { break };
        if matches!(span.kind, Kind::Server | Kind::Consumer) {
            return span
                .str_attribute("http.route")
                .unwrap_or_else(|| span.name())
                .to_owned();
        }
        current = span.parent_id().and_then(|id| index.get(&id).copied());
    }
    match trace.root() {
        Some(root) => root
            .str_attribute("http.route")
            .unwrap_or_else(|| root.name())
            .to_owned(),
        None => "unknown".to_owned(),
    }
}

/// Wall time covered by the spans' intervals together (overlaps counted once).
fn covered_nanos(spans: &[&AssembledSpan]) -> u64 {
    let mut intervals: Vec<(u64, u64)> = spans
        .iter()
        .map(|s| (s.start_unix_nanos, s.end_unix_nanos))
        .collect();
    intervals.sort_unstable();
    let mut covered = 0;
    let mut current: Option<(u64, u64)> = None;
    for (start, end) in intervals {
        match current {
            Some((s, e)) if start <= e => current = Some((s, e.max(end))),
            Some((s, e)) => {
                covered += e - s;
                current = Some((start, end));
            }
            None => current = Some((start, end)),
        }
    }
    if let Some((s, e)) = current {
        covered += e - s;
    }
    covered
}

#[cfg(test)]
#[path = "detect_tests.rs"]
mod tests;
