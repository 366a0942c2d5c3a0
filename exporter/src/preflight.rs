//! Checks of the host before anything is loaded, each failing with one line
//! that says what is wrong and what to do.

use std::fs;
use std::path::Path;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreflightError {
    #[error("missing capabilities {0}: run as root, or grant CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN where the engine cannot grant those)")]
    Capabilities(String),
    #[error("no kernel BTF at /sys/kernel/btf/vmlinux: the kernel needs CONFIG_DEBUG_INFO_BTF=y (or mount /sys/kernel/btf into the container)")]
    NoBtf,
    #[error("tracefs is not mounted at /sys/kernel/tracing or /sys/kernel/debug/tracing: mount it with `mount -t tracefs nodev /sys/kernel/tracing`")]
    NoTracefs,
}

/// Effective capability bits from a /proc/<pid>/status text.
fn effective_caps(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

fn missing_caps(eff: u64) -> Vec<&'static str> {
    let has = |c: u32| eff & (1u64 << c) != 0;
    // CAP_SYS_ADMIN still stands in for both (engines that predate CAP_BPF,
    // such as Docker 20.10, can only grant that one)
    if has(CAP_SYS_ADMIN) || has(CAP_BPF) && has(CAP_PERFMON) {
        return Vec::new();
    }
    [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")].into_iter().filter(|(c, _)| !has(*c)).map(|(_, n)| n).collect()
}

/// A readable file that starts with the BTF magic (0xeB9F, little endian).
fn is_btf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 2];
    fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == [0x9f, 0xeb]
}

pub fn check() -> Result<(), PreflightError> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let missing = missing_caps(effective_caps(&status).unwrap_or(0));
    if !missing.is_empty() {
        return Err(PreflightError::Capabilities(missing.join(", ")));
    }
    if !is_btf(Path::new("/sys/kernel/btf/vmlinux")) {
        return Err(PreflightError::NoBtf);
    }
    let tracefs = ["/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"];
    if !tracefs.iter().any(|p| Path::new(p).exists()) {
        return Err(PreflightError::NoTracefs);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn btf_magic() {
        let d = tempfile::tempdir().unwrap();
        let good = d.path().join("good");
        fs::write(&good, [0x9f, 0xeb, 1, 0]).unwrap();
        let bad = d.path().join("bad");
        fs::write(&bad, b"").unwrap();
        assert!(is_btf(&good));
        assert!(!is_btf(&bad));
        assert!(!is_btf(&d.path().join("missing")));
    }

    #[test]
    fn capability_sets() {
        assert_eq!(effective_caps("Name:\tx\nCapEff:\t000001ffffffffff\n"), Some(0x1ffffffffff));
        assert!(missing_caps(0x1ffffffffff).is_empty());
        assert!(missing_caps((1 << CAP_BPF) | (1 << CAP_PERFMON)).is_empty());
        assert!(missing_caps(1 << CAP_SYS_ADMIN).is_empty());
        assert_eq!(missing_caps(0), vec!["CAP_BPF", "CAP_PERFMON"]);
        assert_eq!(missing_caps(1 << CAP_BPF), vec!["CAP_PERFMON"]);
        assert_eq!(PreflightError::Capabilities("CAP_PERFMON".into()).to_string().lines().count(), 1);
    }
}
