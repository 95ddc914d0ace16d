//! Child processes owned by a test: output goes to a log file under the test's
//! directory (printed when the test fails), and the process is killed on drop so a
//! failing test never leaves strays behind.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `<log_dir>/<name>.log`.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open log file");
        cmd.stdout(out.try_clone().expect("dup log")).stderr(out);
        if cmd.get_envs().all(|(k, _)| k != "RUST_LOG") {
            cmd.env("RUST_LOG", "info");
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    /// Starts `cmd` with piped stdin, for processes that read a secret from it.
    pub fn spawn_with_stdin(name: &str, mut cmd: Command, log_dir: &Path, stdin: &[u8]) -> Proc {
        use std::io::Write;
        cmd.stdin(Stdio::piped());
        let mut p = Proc::spawn(name, cmd, log_dir);
        let mut pipe = p.child.as_mut().unwrap().stdin.take().expect("stdin pipe");
        pipe.write_all(stdin).expect("write stdin");
        drop(pipe);
        p
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// kill -9, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for exit.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        c.wait().ok()
    }

    /// Whether the process has exited (without reaping a still-running one).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The log so far, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            if std::thread::panicking() {
                eprintln!("----- {} log ({}) -----", self.name, self.log.display());
                eprintln!("{}", tail(&self.log_text(), 200));
            }
        }
    }
}

/// SIGKILLs every process whose command line names a path under `dir`: what a
/// process started in its own process group (an agent's hosted nodes) left behind
/// when its parent was killed.
pub fn kill_strays_under(dir: &Path) {
    let Some(dir) = dir.to_str() else { return };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let names_dir = cmdline.split(|b| *b == 0).any(|arg| {
            let arg = String::from_utf8_lossy(arg);
            arg == dir
                || arg
                    .strip_prefix(dir)
                    .is_some_and(|rest| rest.starts_with('/'))
        });
        if names_dir {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Runs a command to completion, returning (status, stdout, stderr).
pub fn run(mut cmd: Command) -> (ExitStatus, String, String) {
    let out = cmd.output().expect("run command");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
