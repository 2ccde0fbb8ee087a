//! `telltale-sdk`: what a Rust service links to send the Telltale agent its traces
//! and metrics over OTLP.
//!
//! This crate is deliberately empty for now: the instrumentation (`init()`, the
//! tower layer, sqlx, reqwest and Redis spans) lands with the SDK issue, on top of
//! the agent's OTLP receiver. It exists so the workspace layout is final.
