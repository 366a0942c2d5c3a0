//! Compiles the C CO-RE programs into one BPF object with clang.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const SOURCE: &str = "src/probes.bpf.c";
const HEADERS: &[&str] = &["include/events.h", "include/kernel_types.h"];
const CLANGS: &[&str] = &["clang-16", "clang-17", "clang-15", "clang-14", "clang"];

fn find_clang() -> Option<String> {
    if let Ok(c) = env::var("CLANG") {
        return Some(c);
    }
    CLANGS
        .iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .map(|c| c.to_string())
}

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    for h in HEADERS {
        println!("cargo:rerun-if-changed={h}");
    }
    println!("cargo:rerun-if-env-changed=CLANG");

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("probes.bpf.o");
    let Some(clang) = find_clang() else {
        panic!("clang not found: install it with `apt-get install clang-16 libbpf-dev` or set CLANG=/path/to/clang");
    };
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => panic!("unsupported target architecture {other} for the BPF programs"),
        Err(_) => "x86",
    };
    let status = Command::new(&clang)
        .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror", "-Wno-unused-function"])
        .arg(format!("-D__TARGET_ARCH_{arch}"))
        .args(["-Iinclude", "-idirafter", "/usr/include"])
        .args(["-c", SOURCE, "-o"])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("running {clang}: {e}"));
    if !status.success() {
        panic!("{clang} failed to compile {SOURCE} (is libbpf-dev installed for <bpf/bpf_helpers.h>?)");
    }
    // Drop DWARF (the .BTF sections stay: CO-RE and the maps need them).
    for strip in ["llvm-strip-16", "llvm-strip"] {
        if Command::new(strip).arg("-g").arg(&out).status().is_ok_and(|s| s.success()) {
            break;
        }
    }
}
