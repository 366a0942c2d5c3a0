//! The `trace` subcommand's view: one start as a readable timeline.

use std::fmt::Write;

use crate::record::StartupRecord;

const BAR: usize = 40;

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Renders a record: id, runtime, outcome and total, then each phase with its
/// offset from the start, its duration and a bar placed on the start's span.
pub fn render(r: &StartupRecord) -> String {
    let mut s = String::new();
    let total = r.end_ns.saturating_sub(r.start_ns).max(1);
    let short = r.container_id.get(..12).unwrap_or(&r.container_id);
    let _ = write!(s, "{short}  {}  {}  total {:.1} ms", r.runtime, r.outcome.as_str(), ms(total));
    if let Some(e) = &r.entrypoint {
        let _ = write!(s, "  entrypoint {} (pid {})", e.filename, e.pid);
    }
    if let Some(reason) = &r.failure_reason {
        let _ = write!(s, "  reason: {reason}");
    }
    s.push('\n');
    let _ = writeln!(s, "  {:<17} {:>10} {:>10}", "phase", "offset", "duration");
    for p in &r.phases {
        let off = p.start_ns.saturating_sub(r.start_ns);
        let from = ((off as f64 / total as f64) * BAR as f64) as usize;
        let span = p.end_ns.saturating_sub(p.start_ns);
        let len = (((span as f64 / total as f64) * BAR as f64).round() as usize).max(1);
        let from = from.min(BAR - 1);
        let len = len.min(BAR - from);
        let bar = format!("{}{}{}", " ".repeat(from), "█".repeat(len), " ".repeat(BAR - from - len));
        let count = if p.count > 1 { format!(" ×{}", p.count) } else { String::new() };
        let _ = writeln!(
            s,
            "  {:<17} {:>7.1} ms {:>7.1} ms |{bar}|{count}",
            p.phase.as_str(),
            ms(off),
            p.duration_seconds * 1e3
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phase::Phase;
    use crate::record::{Outcome, PhaseTotal};

    #[test]
    fn renders_phases_with_offsets_and_bars() {
        let r = StartupRecord {
            container_id: "6e5f834a423c95453f55782eedac1802dedee78d85061ce71b36134d63f50aef".into(),
            runtime: "runc".into(),
            outcome: Outcome::Success,
            failure_reason: None,
            start_ns: 1_000_000_000,
            end_ns: 1_200_000_000,
            duration_seconds: 0.2,
            phases: vec![
                PhaseTotal {
                    phase: Phase::OverlayMount,
                    start_ns: 1_000_000_000,
                    end_ns: 1_010_000_000,
                    duration_seconds: 0.01,
                    count: 3,
                },
                PhaseTotal {
                    phase: Phase::Exec,
                    start_ns: 1_190_000_000,
                    end_ns: 1_200_000_000,
                    duration_seconds: 0.01,
                    count: 1,
                },
            ],
            spans: vec![],
            namespaces: None,
            identity: Default::default(),
            init_pid: None,
            entrypoint: None,
            rootfs: None,
            network: None,
        };
        let out = render(&r);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "6e5f834a423c  runc  success  total 200.0 ms");
        assert!(lines[2].starts_with("  overlay_mount         0.0 ms    10.0 ms |██      "), "{}", lines[2]);
        assert!(lines[2].ends_with("| ×3"));
        assert!(lines[3].starts_with("  exec                190.0 ms    10.0 ms |"));
        assert!(lines[3].contains("██|"), "{}", lines[3]);
    }
}
