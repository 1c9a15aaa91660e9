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
        }
    }
}
