//! Process CPU time and resident memory read from `/proc/<pid>/stat` and
//! `/proc/<pid>/status` (Linux only; other platforms report nothing).

use std::time::Duration;

/// Clock ticks per second used by `/proc/<pid>/stat` (USER_HZ); 100 on every
/// mainstream Linux architecture.
const CLK_TCK: f64 = 100.0;

/// Which process to read.
#[derive(Debug, Clone, Copy)]
pub enum Proc {
    /// The load generator itself.
    Myself,
    /// Another process by PID.
    Pid(u32),
    /// The calling thread only (`/proc/thread-self`), so a dedicated thread's
    /// CPU can be told apart from the rest of the generator.
    ThisThread,
}

impl Proc {
    fn path(self, file: &str) -> String {
        match self {
            Proc::Myself => format!("/proc/self/{file}"),
            Proc::Pid(pid) => format!("/proc/{pid}/{file}"),
            Proc::ThisThread => format!("/proc/thread-self/{file}"),
        }
    }

    /// User + system CPU time consumed so far.
    pub fn cpu(self) -> Option<Duration> {
        let stat = std::fs::read_to_string(self.path("stat")).ok()?;
        // Fields after the parenthesised command name (which may contain spaces).
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[0] is field 3 (state); utime is field 14, stime field 15.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(Duration::from_secs_f64((utime + stime) as f64 / CLK_TCK))
    }

    /// Resident set size in KiB (`VmRSS`).
    pub fn rss_kib(self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    /// Peak resident set size since the process started, in KiB (`VmHWM`):
    /// catches a peak between two samples.
    pub fn rss_peak_kib(self) -> Option<u64> {
        self.status_kib("VmHWM:")
    }

    fn status_kib(self, key: &str) -> Option<u64> {
        let status = std::fs::read_to_string(self.path("status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    }

    /// Number of open file descriptors (entries of `/proc/<pid>/fd`).
    pub fn open_fds(self) -> Option<usize> {
        Some(std::fs::read_dir(self.path("fd")).ok()?.count())
    }
}

/// CPU time of the whole machine so far, summed over all cores: (busy, total)
/// from the first line of `/proc/stat`. The difference of two readings minus
/// what the server and the generator used is what other processes took, i.e.
/// how far a measurement was disturbed.
pub fn machine_cpu() -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let v: Vec<u64> = line.split_whitespace().take(8).filter_map(|x| x.parse().ok()).collect();
    if v.len() < 8 {
        return None;
    }
    let idle = v[3] + v[4];
    let total: u64 = v.iter().sum();
    let secs = |t: u64| Duration::from_secs_f64(t as f64 / CLK_TCK);
    Some((secs(total - idle), secs(total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_stats() {
        if cfg!(target_os = "linux") {
            assert!(Proc::Myself.cpu().is_some());
            assert!(Proc::Myself.rss_kib().unwrap() > 0);
            assert!(Proc::Myself.open_fds().unwrap() > 0);
            assert!(Proc::Myself.rss_peak_kib().unwrap() >= Proc::Myself.rss_kib().unwrap());
            assert!(Proc::ThisThread.cpu().is_some());
            let (busy, total) = machine_cpu().unwrap();
            assert!(busy <= total && total > Duration::ZERO);
        }
    }
}
