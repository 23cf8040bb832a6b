//! Records the redb version from the workspace's Cargo.lock, for the report.

fn main() {
    let lock = std::fs::read_to_string("../../Cargo.lock").unwrap_or_default();
    let mut version = "unknown".to_owned();
    let mut in_redb = false;
    for line in lock.lines() {
        if line.starts_with("name = ") {
            in_redb = line == "name = \"redb\"";
        } else if in_redb {
            if let Some(v) = line.strip_prefix("version = ") {
                version = v.trim_matches('"').to_owned();
                in_redb = false;
            }
        }
    }
    println!("cargo:rustc-env=REDB_VERSION={version}");
    println!("cargo:rerun-if-changed=../../Cargo.lock");
}
