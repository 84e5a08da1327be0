//! The system tools a run needs, installed from Debian when missing.

use std::path::{Path, PathBuf};

use crate::net::{run, NetError};

/// libfaketime's multi-threaded build, as the Debian package installs it.
const FAKETIME_LIBS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
];

fn have(cmd: &str) -> bool {
    run(&["sh", "-c", &format!("command -v {cmd}")]).is_ok()
}

fn apt_install(packages: &[&str]) -> Result<(), NetError> {
    run(&["apt-get", "update"])?;
    let mut args = vec!["apt-get", "install", "-y", "--no-install-recommends"];
    args.extend_from_slice(packages);
    run(&args)?;
    Ok(())
}

/// Makes sure `ip` and `iptables` exist (and libfaketime when `clock` is
/// wanted); returns the libfaketime path in that case.
pub fn ensure(clock: bool) -> Result<Option<PathBuf>, NetError> {
    let mut missing = Vec::new();
    if !have("ip") {
        missing.push("iproute2");
    }
    if !have("iptables") {
        missing.push("iptables");
    }
    if clock && faketime_lib().is_none() {
        missing.push("faketime");
    }
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    if !clock {
        return Ok(None);
    }
    faketime_lib().map(Some).ok_or_else(|| NetError {
        command: "find libfaketime".into(),
        detail: "the faketime package installed no libfaketimeMT.so.1".into(),
    })
}

fn faketime_lib() -> Option<PathBuf> {
    FAKETIME_LIBS
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .map(Path::to_path_buf)
}
