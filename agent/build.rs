//! Links the `telltale` binary with its functions in the order of
//! `link-order.txt`: the code a running agent uses sits together instead of
//! scattered over the whole text, so far fewer of its pages become resident
//! (the file's header says why and how it is made).
//!
//! Release builds only, and only where the linker takes lld's
//! `--symbol-ordering-file`: a probe links an empty program with the same
//! rustc, target, flags and linker first. Rust links x86_64 Linux (GNU) with
//! its own lld; a toolchain or a configuration that uses another linker fails
//! the probe and the binary links as usual. `TELLTALE_LINK_ORDER=0` turns it
//! off. Where the system's loader takes them (glibc 2.36 and later), its
//! relative relocations are packed too (`TELLTALE_RELR=0` turns that off).

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn main() {
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-env-changed=TELLTALE_LINK_ORDER");
    println!("cargo:rerun-if-env-changed=TELLTALE_RELR");
    let var = |name: &str| env::var(name).unwrap_or_default();
    if var("PROFILE") != "release" {
        return;
    }
    let out = PathBuf::from(var("OUT_DIR"));
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("link-order.txt");
    // The probe is ordered by an empty list, not the agent's.
    let empty_order = out.join("probe-order.txt");
    if var("TELLTALE_LINK_ORDER") != "0"
        && order.is_file()
        && std::fs::write(&empty_order, "").is_ok()
        && probe_links(&out, "order", &order_args(&empty_order), false)
    {
        for arg in order_args(&order) {
            println!("cargo:rustc-link-arg-bin=telltale={arg}");
        }
    }
    // Relative relocations packed as bitmaps (DT_RELR) instead of 24 bytes
    // each: the loader reads every one at start-up, and the 23,000 of them
    // kept 550 KiB of the binary resident. Needs glibc 2.36 or later where
    // the binary runs, so the probe runs what it linked, and
    // `TELLTALE_RELR=0` turns it off for a binary bound for older systems.
    let relr_args = ["-Wl,-z,pack-relative-relocs".to_owned()];
    if var("TELLTALE_RELR") != "0"
        && var("HOST") == var("TARGET")
        && probe_links(&out, "relr", &relr_args, true)
    {
        for arg in relr_args {
            println!("cargo:rustc-link-arg-bin=telltale={arg}");
        }
    }
}

fn order_args(list: &Path) -> [String; 2] {
    [
        format!("-Wl,--symbol-ordering-file={}", list.display()),
        // Functions renamed since the list was made are skipped quietly.
        "-Wl,--no-warn-symbol-ordering".to_owned(),
    ]
}

/// Whether an empty program links with `link_args` (and, with `run`, runs),
/// built in `out` the way this crate is (rustc, target, rustflags,
/// configured linker).
fn probe_links(out: &Path, name: &str, link_args: &[String], run: bool) -> bool {
    let source = out.join("probe.rs");
    if std::fs::write(&source, "fn main() {}\n").is_err() {
        return false;
    }
    let binary = out.join(format!("probe-{name}"));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut probe = Command::new(rustc);
    probe
        .arg("--crate-name=link_probe")
        .arg("--target")
        .arg(env::var("TARGET").unwrap_or_default())
        .arg("-o")
        .arg(&binary);
    for arg in link_args {
        probe.arg(format!("-Clink-arg={arg}"));
    }
    probe.arg(&source);
    if let Ok(linker) = env::var("RUSTC_LINKER") {
        probe.arg(format!("-Clinker={linker}"));
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    probe.args(flags.split('\x1f').filter(|flag| !flag.is_empty()));
    let quiet = |command: &mut Command| {
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    quiet(&mut probe) && (!run || quiet(&mut Command::new(&binary)))
}
