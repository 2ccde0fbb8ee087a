//! Links the `telltale` binary with its functions in the order of
//! `link-order.txt`: the code a running agent uses sits together instead of
//! scattered over the whole text, so far fewer of its pages become resident
//! (the file's header says why and how it is made).
//!
//! Only where the linker is known to be lld, which takes
//! `--symbol-ordering-file`: Rust links x86_64 Linux (GNU) with its own lld
//! unless the build names another linker. Anywhere else the binary links as
//! usual. `TELLTALE_LINK_ORDER=0` turns it off.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-env-changed=TELLTALE_LINK_ORDER");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let rustflags = var("CARGO_ENCODED_RUSTFLAGS");
    let default_lld = var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        // A configured linker, or flags choosing one, may not be lld.
        && env::var_os("RUSTC_LINKER").is_none()
        && !rustflags.contains("linker")
        && !rustflags.contains("fuse-ld");
    let wanted = var("TELLTALE_LINK_ORDER") != "0" && var("PROFILE") == "release";
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("link-order.txt");
    if default_lld && wanted && order.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=telltale=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Functions renamed since the list was made are skipped quietly.
        println!("cargo:rustc-link-arg-bin=telltale=-Wl,--no-warn-symbol-ordering");
    }
}
