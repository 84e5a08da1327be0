//! Child processes of the systems under test, and what `/proc` says of them
//! (CPU seconds, resident and peak memory).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Linux reports `/proc/<pid>/stat` times in USER_HZ, which is 100 on every
/// architecture the kernel exports to user space.
const USER_HZ: f64 = 100.0;

/// One server process: how to start it, and the running child if any.
pub struct Proc {
    /// A short name for reports and errors ("cairn-1", "etcd-2").
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

/// A process's resource use, read from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// User plus system CPU seconds since it started.
    pub cpu_s: f64,
    /// Resident memory now, in bytes.
    pub rss: u64,
    /// Peak resident memory since start or the last [`Proc::reset_peak`].
    pub peak_rss: u64,
}

impl Proc {
    /// Describes a process; nothing runs until [`Proc::start`].
    pub fn new(name: &str, program: &Path, args: Vec<String>, log: PathBuf) -> Self {
        Self {
            name: name.to_string(),
            program: program.to_path_buf(),
            args,
            log,
            child: None,
        }
    }

    /// Starts it, appending its output to its log file.
    pub fn start(&mut self) -> std::io::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether it was started and has not been killed.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Its resource use, while it runs.
    pub fn usage(&self) -> Option<Usage> {
        let pid = self.child.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces; the fields after its closing
        // parenthesis start at field 3 (state), so utime (14) and stime (15)
        // are at 11 and 12.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Some(Usage {
            cpu_s: ticks / USER_HZ,
            rss: kib("VmRSS:") * 1024,
            peak_rss: kib("VmHWM:") * 1024,
        })
    }

    /// Resets the kernel's peak-RSS mark, so the next reading is the peak of
    /// the coming run alone.
    pub fn reset_peak(&self) {
        if let Some(child) = &self.child {
            let _ = std::fs::write(format!("/proc/{}/clear_refs", child.id()), "5");
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
