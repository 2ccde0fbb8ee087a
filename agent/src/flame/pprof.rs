//! pprof profiles (`perftools.profiles.Profile`, the protobuf that Go, pprof-rs,
//! py-spy and Pyroscope clients write) turned into folded stacks.
//!
//! The few messages needed are declared here with prost's derive, field numbers
//! from `profile.proto`, rather than taken from the `pprof` crate: that crate
//! is a sampler (signal handler, unwinder, symbolizer) built on an older prost,
//! and the agent only decodes. Fields the agent does not read (mappings, drop
//! and keep frames, comments) are skipped by prost as unknown fields.

use std::collections::HashMap;

use prost::Message;

use super::folded::{MAX_LINE_BYTES, Stacks, frame_name};

/// `perftools.profiles.Profile`, the fields the agent reads.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Profile {
    /// What each sample value measures.
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    /// The samples.
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    /// Code locations referenced by samples.
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    /// Functions referenced by locations.
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    /// Every string, referenced by index; entry 0 is "".
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    /// Collection time, nanoseconds since the Unix epoch.
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    /// How long the profile covers.
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    /// What the period counts.
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    /// Events between samples (nanoseconds for CPU profiles).
    #[prost(int64, tag = "12")]
    pub period: i64,
    /// The preferred sample type, as a string index.
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

/// A value's meaning: type and unit as string indexes.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ValueType {
    /// e.g. `samples`, `cpu`.
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    /// e.g. `count`, `nanoseconds`.
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// One stack and its values.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Sample {
    /// Location ids, leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    /// One value per sample type.
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
}

/// A code address with the functions (inlined ones first) it belongs to.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Location {
    /// Unique, non-zero.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The instruction address, shown when there is no symbol.
    #[prost(uint64, tag = "3")]
    pub address: u64,
    /// Innermost inlined function first, the caller they were inlined into last.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

/// A function (and line) at a location.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Line {
    /// The function's id.
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    /// Source line.
    #[prost(int64, tag = "2")]
    pub line: i64,
}

/// A function.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Function {
    /// Unique, non-zero.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Human-readable name, as a string index.
    #[prost(int64, tag = "2")]
    pub name: i64,
    /// Mangled name, as a string index.
    #[prost(int64, tag = "3")]
    pub system_name: i64,
}

/// Why a pprof profile was refused. The message names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pprof profile: {0}")]
pub struct PprofError(String);

/// A decoded profile as folded stacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedProfile {
    /// Stack counts of the chosen sample type.
    pub stacks: Stacks,
    /// The chosen sample type and unit, e.g. `samples`/`count`.
    pub sample_type: (String, String),
    /// Sampling frequency derived from a CPU profile's period, when it has one.
    pub sample_rate_hz: Option<u32>,
}

/// Decodes `body` and folds the samples of `wanted` sample type (by name;
/// default `samples` when present, else the profile's default type, else
/// the last one, as `profile.proto` says), at most `cap` distinct stacks.
pub fn decode_pprof(
    body: &[u8],
    wanted: Option<&str>,
    cap: usize,
) -> Result<DecodedProfile, PprofError> {
    let profile =
        Profile::decode(body).map_err(|e| PprofError(format!("not a protobuf Profile: {e}")))?;
    let strings = StringTable(&profile.string_table);
    if profile.sample_type.is_empty() {
        return Err(PprofError("sample_type is empty".to_owned()));
    }
    let value_index = choose_sample_type(&profile, &strings, wanted)?;
    let chosen = &profile.sample_type[value_index];
    let sample_type = (
        strings.get(chosen.r#type, "sample_type.type")?.to_owned(),
        strings.get(chosen.unit, "sample_type.unit")?.to_owned(),
    );
    let functions: HashMap<u64, &Function> = profile.function.iter().map(|f| (f.id, f)).collect();
    let mut frames_of: HashMap<u64, Vec<String>> = HashMap::with_capacity(profile.location.len());
    for (i, location) in profile.location.iter().enumerate() {
        frames_of.insert(
            location.id,
            location_frames(i, location, &functions, &strings)?,
        );
    }
    let mut stacks = Stacks::default();
    let mut stack = String::new();
    for (i, sample) in profile.sample.iter().enumerate() {
        let value = *sample.value.get(value_index).ok_or_else(|| {
            PprofError(format!(
                "sample {i}: {} values for {} sample types",
                sample.value.len(),
                profile.sample_type.len()
            ))
        })?;
        let count = u64::try_from(value)
            .map_err(|_| PprofError(format!("sample {i}: negative value {value}")))?;
        if count == 0 {
            continue;
        }
        stack.clear();
        // Samples list the leaf first; folded stacks start at the root.
        for id in sample.location_id.iter().rev() {
            let frames = frames_of.get(id).ok_or_else(|| {
                PprofError(format!("sample {i}: location_id {id} is not in location"))
            })?;
            for frame in frames {
                if !stack.is_empty() {
                    stack.push(';');
                }
                stack.push_str(frame);
            }
        }
        if stack.len() > MAX_LINE_BYTES {
            return Err(PprofError(format!(
                "sample {i}: stack of {} bytes is longer than the limit of {MAX_LINE_BYTES}",
                stack.len()
            )));
        }
        if stack.is_empty() {
            stack.push_str("[no frames]");
        }
        stacks.add(&stack, count, cap);
    }
    Ok(DecodedProfile {
        stacks,
        sample_rate_hz: sample_rate(&profile, &strings),
        sample_type,
    })
}

fn choose_sample_type(
    profile: &Profile,
    strings: &StringTable<'_>,
    wanted: Option<&str>,
) -> Result<usize, PprofError> {
    let type_name = |t: &ValueType| strings.get(t.r#type, "sample_type.type");
    if let Some(wanted) = wanted {
        let mut names = Vec::new();
        for (i, t) in profile.sample_type.iter().enumerate() {
            let name = type_name(t)?;
            if name == wanted {
                return Ok(i);
            }
            names.push(name);
        }
        return Err(PprofError(format!(
            "sample_type `{wanted}` not in the profile (it has {})",
            names.join(", ")
        )));
    }
    for (i, t) in profile.sample_type.iter().enumerate() {
        if type_name(t)? == "samples" {
            return Ok(i);
        }
    }
    if profile.default_sample_type != 0 {
        for (i, t) in profile.sample_type.iter().enumerate() {
            if t.r#type == profile.default_sample_type {
                return Ok(i);
            }
        }
    }
    Ok(profile.sample_type.len() - 1)
}

/// A location's frames, root-most first: its lines reversed, since the last
/// line is the function the others were inlined into.
fn location_frames(
    index: usize,
    location: &Location,
    functions: &HashMap<u64, &Function>,
    strings: &StringTable<'_>,
) -> Result<Vec<String>, PprofError> {
    if location.line.is_empty() {
        return Ok(vec![format!("0x{:x}", location.address)]);
    }
    location
        .line
        .iter()
        .rev()
        .map(|line| {
            let function = functions.get(&line.function_id).ok_or_else(|| {
                PprofError(format!(
                    "location {index} (id {}): function_id {} is not in function",
                    location.id, line.function_id
                ))
            })?;
            let mut name = strings.get(function.name, "function.name")?;
            if name.is_empty() {
                name = strings.get(function.system_name, "function.system_name")?;
            }
            if name.is_empty() {
                return Ok(format!("0x{:x}", location.address));
            }
            Ok(frame_name(name).into_owned())
        })
        .collect()
}

/// Samples per second from a CPU profile's period in nanoseconds.
fn sample_rate(profile: &Profile, strings: &StringTable<'_>) -> Option<u32> {
    let period_type = profile.period_type.as_ref()?;
    let unit = strings.get(period_type.unit, "period_type.unit").ok()?;
    if unit != "nanoseconds" || profile.period <= 0 {
        return None;
    }
    u32::try_from(1_000_000_000 / profile.period).ok()
}

struct StringTable<'a>(&'a [String]);

impl StringTable<'_> {
    fn get(&self, index: i64, field: &str) -> Result<&str, PprofError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.0.get(i))
            .map(String::as_str)
            .ok_or_else(|| {
                PprofError(format!(
                    "{field} = {index} is outside string_table ({} strings)",
                    self.0.len()
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A profile with `main → work → (inlined) hot` and `main → idle`.
    fn profile() -> Profile {
        let strings = [
            "",
            "samples",
            "count",
            "cpu",
            "nanoseconds",
            "main",
            "work",
            "hot",
            "idle",
        ];
        let function = |id: u64, name: i64| Function {
            id,
            name,
            system_name: name,
        };
        let line = |function_id| Line {
            function_id,
            line: 1,
        };
        Profile {
            sample_type: vec![
                ValueType { r#type: 1, unit: 2 },
                ValueType { r#type: 3, unit: 4 },
            ],
            sample: vec![
                Sample {
                    location_id: vec![2, 1],
                    value: vec![30, 300],
                },
                Sample {
                    location_id: vec![3, 1],
                    value: vec![5, 50],
                },
                Sample {
                    location_id: vec![4],
                    value: vec![2, 20],
                },
            ],
            location: vec![
                Location {
                    id: 1,
                    address: 0x10,
                    line: vec![line(1)],
                },
                Location {
                    id: 2,
                    address: 0x20,
                    line: vec![line(3), line(2)],
                },
                Location {
                    id: 3,
                    address: 0x30,
                    line: vec![line(4)],
                },
                Location {
                    id: 4,
                    address: 0xbeef,
                    line: vec![],
                },
            ],
            function: vec![
                function(1, 5),
                function(2, 6),
                function(3, 7),
                function(4, 8),
            ],
            string_table: strings.iter().map(|s| (*s).to_owned()).collect(),
            period_type: Some(ValueType { r#type: 3, unit: 4 }),
            period: 10_101_010,
            ..Profile::default()
        }
    }

    #[test]
    fn folds_samples_root_first_with_inlined_frames() {
        let decoded = decode_pprof(&profile().encode_to_vec(), None, 100).unwrap();
        assert_eq!(
            decoded.stacks.to_folded(),
            "0xbeef 2\nmain;idle 5\nmain;work;hot 30\n"
        );
        assert_eq!(decoded.sample_type, ("samples".into(), "count".into()));
        assert_eq!(decoded.sample_rate_hz, Some(99));
        let cpu = decode_pprof(&profile().encode_to_vec(), Some("cpu"), 100).unwrap();
        assert_eq!(cpu.stacks.get("main;work;hot"), Some(300));
    }

    #[test]
    fn errors_name_the_field() {
        let expect = |profile: Profile, wanted: Option<&str>, message: &str| {
            let error = decode_pprof(&profile.encode_to_vec(), wanted, 100)
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(message),
                "{error:?} should contain {message:?}"
            );
        };
        let mut negative = profile();
        negative.sample[1].value[0] = -5;
        expect(negative, None, "sample 1: negative value -5");
        let mut dangling = profile();
        dangling.sample[0].location_id.push(99);
        expect(
            dangling,
            None,
            "sample 0: location_id 99 is not in location",
        );
        let mut bad_string = profile();
        bad_string.function[2].name = 1_000;
        expect(
            bad_string,
            None,
            "function.name = 1000 is outside string_table",
        );
        let mut no_function = profile();
        no_function.location[2].line[0].function_id = 42;
        expect(no_function, None, "location 2 (id 3): function_id 42");
        let mut short = profile();
        short.sample[2].value.clear();
        expect(short, None, "sample 2: 0 values for 2 sample types");
        expect(
            profile(),
            Some("alloc"),
            "sample_type `alloc` not in the profile",
        );
        expect(Profile::default(), None, "sample_type is empty");
    }

    #[test]
    fn truncated_and_garbage_bodies_are_refused() {
        let bytes = profile().encode_to_vec();
        for cut in [1, bytes.len() / 3, bytes.len() - 1] {
            let error = decode_pprof(&bytes[..cut], None, 100).unwrap_err();
            assert!(
                error.to_string().contains("not a protobuf Profile"),
                "{error}"
            );
        }
        assert!(decode_pprof(b"main;work 3\n", None, 100).is_err());
    }
}
