//! Finds the runtime processes already running when the exporter starts, so
//! that the kernel follows them (and what they fork) from the first moment.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;

/// (pid, ppid, comm) of one /proc/<pid>/stat.
fn parse_stat(text: &str) -> Option<(u32, u32, String)> {
    // "pid (comm) state ppid …": comm may hold spaces and parentheses
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_string();
    let mut rest = text.get(close + 1..)?.split_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((pid, ppid, comm))
}

/// Pids of processes named in `comms` (cut to 15 bytes like the kernel's
/// comm) and of all their descendants.
pub fn runtime_pids(proc_root: &Path, comms: &[String]) -> Vec<u32> {
    let names: HashSet<String> = comms.iter().map(|c| c.chars().take(15).collect()).collect();
    let Ok(dir) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut roots = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // a process may exit between listing and reading: skip it
        let Ok(text) = fs::read_to_string(proc_root.join(pid.to_string()).join("stat")) else {
            continue;
        };
        let Some((pid, ppid, comm)) = parse_stat(&text) else { continue };
        children.entry(ppid).or_default().push(pid);
        if names.contains(&comm) {
            roots.push(pid);
        }
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    while let Some(pid) = roots.pop() {
        if !seen.insert(pid) {
            continue;
        }
        out.push(pid);
        if let Some(c) = children.get(&pid) {
            roots.extend(c);
        }
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comm_with_spaces_and_parens() {
        assert_eq!(parse_stat("42 (a (b) c) S 7 42 42 0 -1"), Some((42, 7, "a (b) c".to_string())));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn finds_runtimes_and_descendants() {
        let root = tempfile::tempdir().unwrap();
        let mk = |pid: u32, comm: &str, ppid: u32| {
            let d = root.path().join(pid.to_string());
            fs::create_dir(&d).unwrap();
            fs::write(d.join("stat"), format!("{pid} ({comm}) S {ppid} 0 0")).unwrap();
        };
        mk(1, "systemd", 0);
        mk(100, "dockerd", 1);
        mk(101, "containerd", 100);
        mk(102, "containerd-shim", 1);
        mk(103, "sleep", 102);
        mk(200, "bash", 1);
        fs::create_dir(root.path().join("self")).unwrap();
        let pids = runtime_pids(root.path(), &["dockerd".into(), "containerd-shim-runc-v2".into()]);
        assert_eq!(pids, vec![100, 101, 102, 103]);
    }
}
