//! Running pydc_bench.py (python-diskcache) and reading its JSON.

use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const SCRIPT: &str = include_str!("../pydc_bench.py");

pub struct Python {
    exe: String,
    script: PathBuf,
    pub version: String,
    pub python_version: String,
}

impl Python {
    /// Finds python-diskcache: `python3 -c "import diskcache"` must work ($PYTHON overrides
    /// the interpreter). Err is the reason it is skipped.
    pub fn detect(work: &Path) -> std::result::Result<Python, String> {
        let exe = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let probe = Command::new(&exe)
            .args(["-c", "import diskcache"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        match probe {
            Err(e) => return Err(format!("`{exe}` could not be run ({e})")),
            Ok(o) if !o.status.success() => {
                let err = String::from_utf8_lossy(&o.stderr);
                let last = err.lines().last().unwrap_or("").trim().to_owned();
                return Err(format!("`{exe} -c \"import diskcache\"` failed ({last})"));
            }
            Ok(_) => {}
        }
        let script = work.join("pydc_bench.py");
        std::fs::write(&script, SCRIPT).map_err(|e| format!("writing the script: {e}"))?;
        let mut py = Python {
            exe,
            script,
            version: String::new(),
            python_version: String::new(),
        };
        let v = py
            .run(&serde_json::json!({"cmd": "version"}))
            .map_err(|e| format!("pydc_bench.py failed: {e:#}"))?;
        py.version = v["version"].as_str().unwrap_or("?").to_owned();
        py.python_version = v["python"].as_str().unwrap_or("?").to_owned();
        Ok(py)
    }

    pub fn spawn(&self, params: &Value) -> Result<Child> {
        Command::new(&self.exe)
            .arg(&self.script)
            .arg(params.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", self.exe))
    }

    pub fn run(&self, params: &Value) -> Result<Value> {
        finish(self.spawn(params)?)
    }
}

/// Waits for a worker (Python or Rust) and parses the JSON it printed.
pub fn finish(child: Child) -> Result<Value> {
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(anyhow!("worker exited with {}", out.status));
    }
    serde_json::from_slice(&out.stdout).context("parsing the worker's JSON")
}
