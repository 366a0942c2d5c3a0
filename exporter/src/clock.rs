//! The kernel programs stamp events with bpf_ktime_get_boot_ns(); this reads
//! the same clock (CLOCK_BOOTTIME) in userspace.

/// A clock in ns, 0 if it cannot be read.
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_BOOTTIME
    // (2.6.39+) and CLOCK_REALTIME exist on every kernel this runs on.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn boot_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

fn realtime_ns() -> i128 {
    i128::from(clock_ns(libc::CLOCK_REALTIME))
}

/// CLOCK_REALTIME − CLOCK_BOOTTIME in ns, measured on the first call and then
/// the same for the life of the process.
///
/// Once, because spans of one start are converted at different moments: a
/// fresh offset per span would let an NTP step or slew move a child outside
/// its parent, while one offset keeps every duration and ordering exactly as
/// the kernel measured them (at the price of drifting from the wall clock as
/// much as NTP corrects it while the process runs).
pub fn boot_to_wall_offset_ns() -> i128 {
    static OFFSET: std::sync::OnceLock<i128> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        // Boot clock read on both sides of the wall clock: its midpoint is
        // within a few hundred ns of the moment the wall clock was read.
        let b1 = boot_ns() as i128;
        let wall = realtime_ns();
        let b2 = boot_ns() as i128;
        wall - (b1 + b2) / 2
    })
}

/// A boot-clock timestamp (ns) as wall-clock time, given the offset of
/// [`boot_to_wall_offset_ns`].
pub fn boot_to_system_time(boot_ns: u64, offset_ns: i128) -> std::time::SystemTime {
    let wall = (boot_ns as i128 + offset_ns).max(0);
    // u64 ns reach the year 2554.
    std::time::UNIX_EPOCH + std::time::Duration::from_nanos(u64::try_from(wall).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn offset_maps_now_to_now() {
        let off = boot_to_wall_offset_ns();
        assert_eq!(off, boot_to_wall_offset_ns(), "computed once");
        let now = boot_to_system_time(boot_ns(), off);
        let real = SystemTime::now();
        let diff = real.duration_since(now).unwrap_or_else(|e| e.duration());
        assert!(diff < Duration::from_millis(100), "{diff:?}");
    }

    #[test]
    fn conversion_keeps_differences() {
        let a = boot_to_system_time(1_000, 5_000_000_000);
        let b = boot_to_system_time(1_001_000, 5_000_000_000);
        assert_eq!(b.duration_since(a).unwrap(), Duration::from_micros(1000));
        assert_eq!(a, std::time::UNIX_EPOCH + Duration::from_nanos(5_000_001_000));
    }
}
