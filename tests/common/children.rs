//! Child processes for the multi-process tests: the test binary runs itself again, its role
//! named by an environment variable, and talks to the parent over stdin and stdout.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Runs this test binary again with `role_var` set to `role` and the given arguments; stdin
/// and stdout are piped, stderr is the parent's (so a child's panic shows in the log).
pub fn spawn_self(role_var: &str, role: &str, args: &[&str]) -> Child {
    Command::new(std::env::current_exe().expect("current exe"))
        .env(role_var, role)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child")
}

/// A child's stdout, line by line, read on a thread so that waits can time out.
pub struct Lines(mpsc::Receiver<String>);

impl Lines {
    pub fn of(out: ChildStdout) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(l) = line else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Lines(rx)
    }

    /// The next line, or `None` at the end of the output; panics if the child stays silent
    /// for two minutes (it is hung).
    pub fn next_line(&self) -> Option<String> {
        match self.0.recv_timeout(Duration::from_secs(120)) {
            Ok(l) => Some(l),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("a child printed nothing for 120 s"),
        }
    }

    /// The next line; panics at the end of the output or on two minutes of silence.
    pub fn next(&self) -> String {
        self.next_line().expect("the child's output ended early")
    }
}
