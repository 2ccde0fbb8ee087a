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
//! off.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn main() {
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-env-changed=TELLTALE_LINK_ORDER");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("link-order.txt");
    let wanted = var("TELLTALE_LINK_ORDER") != "0" && var("PROFILE") == "release";
    if wanted && order.is_file() && linker_takes_an_order() {
        println!(
            "cargo:rustc-link-arg-bin=telltale=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Functions renamed since the list was made are skipped quietly.
        println!("cargo:rustc-link-arg-bin=telltale=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether an empty program links with the ordering flags, built the way
/// this crate is (rustc, target, rustflags, configured linker).
fn linker_takes_an_order() -> bool {
    let Some(out) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    let source = out.join("probe.rs");
    let empty_order = out.join("probe-order.txt");
    if std::fs::write(&source, "fn main() {}\n").is_err()
        || std::fs::write(&empty_order, "").is_err()
    {
        return false;
    }
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut probe = Command::new(rustc);
    probe
        .arg("--crate-name=link_order_probe")
        .arg("--target")
        .arg(env::var("TARGET").unwrap_or_default())
        .arg("-o")
        .arg(out.join("probe"))
        .arg(format!(
            "-Clink-arg=-Wl,--symbol-ordering-file={}",
            empty_order.display()
        ))
        .arg("-Clink-arg=-Wl,--no-warn-symbol-ordering")
        .arg(&source);
    if let Ok(linker) = env::var("RUSTC_LINKER") {
        probe.arg(format!("-Clinker={linker}"));
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    probe.args(flags.split('\x1f').filter(|flag| !flag.is_empty()));
    probe
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
