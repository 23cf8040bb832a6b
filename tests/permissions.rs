//! New cache directories are private by default (0700, files 0600), a builder option shares
//! them with a group, and the mode of an existing directory is never changed. One test in
//! its own binary: it sets the process's umask.

use diskcache::Cache;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

/// Every file and directory below `root` (`root` itself excluded), with its mode.
fn modes(root: &Path) -> Vec<(std::path::PathBuf, bool, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("list") {
            let p = e.expect("entry").path();
            let is_dir = p.is_dir();
            out.push((p.clone(), is_dir, mode(&p)));
            if is_dir {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn new_caches_are_private_unless_shared_with_a_group_and_existing_modes_stay() {
    // Safety: sets the process's umask; this binary runs this one test.
    unsafe {
        libc::umask(0o002);
    }
    let base = tempfile::tempdir().expect("tempdir");

    // Default: owner only, whatever the (permissive) umask.
    let private = base.path().join("private").join("nested");
    let cache = Cache::open(&private).expect("open");
    cache.set("big", vec![0u8; 100_000]).expect("a value file");
    cache.set("small", 1).expect("set");
    assert_eq!(mode(&private), 0o700);
    assert_eq!(mode(private.parent().expect("parent")), 0o700);
    let all = modes(&private);
    assert!(all
        .iter()
        .any(|(p, _, _)| p.extension().is_some_and(|x| x == "val")));
    for (p, is_dir, m) in &all {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*m, want, "{} has mode {m:o}", p.display());
    }
    drop(cache);

    // Shared with a group.
    let shared = base.path().join("shared");
    let cache = Cache::builder()
        .file_mode(0o660)
        .open(&shared)
        .expect("open");
    cache.set("big", vec![0u8; 100_000]).expect("a value file");
    assert_eq!(mode(&shared), 0o770);
    for (p, is_dir, m) in modes(&shared) {
        let want = if is_dir { 0o770 } else { 0o660 };
        assert_eq!(m, want, "{} has mode {m:o}", p.display());
    }
    drop(cache);

    // An existing directory keeps its mode.
    let existing = base.path().join("existing");
    std::fs::create_dir(&existing).expect("mkdir");
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    Cache::open(&existing)
        .expect("open")
        .set("k", 1)
        .expect("set");
    assert_eq!(mode(&existing), 0o755);
}
