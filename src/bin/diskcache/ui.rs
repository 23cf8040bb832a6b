//! Progress bars (on a terminal only) and human-readable numbers.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static PROGRESS_OFF: AtomicBool = AtomicBool::new(false);

/// Turns progress bars off (`--no-progress`).
pub fn disable_progress() {
    PROGRESS_OFF.store(true, Ordering::Relaxed);
}

/// Whether progress may be drawn: stderr is a terminal and it was not turned off.
fn progress_on() -> bool {
    !PROGRESS_OFF.load(Ordering::Relaxed) && std::io::stderr().is_terminal()
}

/// A bar counting `len` items (or bytes, with `bytes`) on stderr; hidden in pipes.
pub fn bar(len: u64, msg: &str, bytes: bool) -> ProgressBar {
    if !progress_on() {
        return ProgressBar::hidden();
    }
    let template = if bytes {
        "{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})"
    } else {
        "{msg} [{bar:40}] {pos}/{len} ({eta})"
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let pb = ProgressBar::new(len).with_style(style);
    pb.set_message(msg.to_owned());
    pb
}

/// A spinner for work of unknown length (counting bytes, with `bytes`); hidden in pipes.
pub fn spinner(msg: &str, bytes: bool) -> ProgressBar {
    if !progress_on() {
        return ProgressBar::hidden();
    }
    let template = if bytes {
        "{spinner} {msg} {bytes} ({elapsed})"
    } else {
        "{spinner} {msg} ({elapsed})"
    };
    let style =
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner());
    let pb = ProgressBar::new_spinner().with_style(style);
    pb.set_message(msg.to_owned());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// `1536` -> `1.5 KiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut x = n as f64;
    let mut unit = 0;
    while x >= 1024.0 && unit + 1 < UNITS.len() {
        x /= 1024.0;
        unit += 1;
    }
    format!("{x:.1} {}", UNITS[unit])
}

/// A duration in nanoseconds, in the unit that suits it.
pub fn nanos(ns: u64) -> String {
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.2} us", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.2} s", ns as f64 / 1e9)
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Parses hex (either case, even length).
pub fn unhex(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or_else(|| format!("not a hex digit pair at {i}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(unhex("00ABff").unwrap(), vec![0, 0xab, 0xff]);
        assert!(unhex("abc").is_err());
        assert!(unhex("zz").is_err());
        assert!(unhex("é0").is_err());
    }

    #[test]
    fn byte_counts_read_naturally() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }
}
