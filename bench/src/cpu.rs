//! CPU time from `/proc` (Linux): per thread (`schedstat`, nanoseconds) and per process (`stat`, clock ticks).

use std::collections::BTreeMap;
use std::time::Duration;

/// The thread id of the calling thread (`/proc/thread-self` → `…/task/<tid>`).
pub fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// CPU time of one thread of this process, from `/proc/self/task/<tid>/schedstat` (first field, ns).
pub fn thread_cpu(tid: u32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// CPU time of every live thread of this process.
pub fn threads_cpu() -> BTreeMap<u32, Duration> {
    let mut out = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            if let Some(tid) = e.file_name().to_str().and_then(|s| s.parse().ok())
                && let Some(t) = thread_cpu(tid)
            {
                out.insert(tid, t);
            }
        }
    }
    out
}

/// Sum of per-thread CPU between two snapshots (threads that appeared count from zero).
pub fn delta(before: &BTreeMap<u32, Duration>, after: &BTreeMap<u32, Duration>) -> Duration {
    after
        .iter()
        .map(|(tid, t)| t.saturating_sub(before.get(tid).copied().unwrap_or_default()))
        .sum()
}

/// User + system CPU of the whole process (`/proc/self/stat` fields 14 and 15, at 100 ticks per second).
pub fn process_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces: count fields after its closing parenthesis.
    let rest = s.get(s.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Peak resident set size of a process in kB (`VmHWM` in `/proc/<pid>/status`).
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmHWM:")
}

/// Resident set size of a process now, in kB (`VmRSS`).
pub fn rss_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS:")
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resets this process's peak RSS (`VmHWM`) to its current RSS (`5` to `/proc/self/clear_refs`, Linux ≥ 4.0), so a
/// phase's own peak can be read. False when the kernel refused.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
