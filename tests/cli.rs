//! The `diskcache` command-line tool, driven as a user drives it: a real process per
//! command, arguments, standard input and output, exit statuses.
//!
//! Every test has its own temporary directory. Caches are prepared either with the tool
//! itself or with the library (for states the tool cannot make, such as values of the
//! bincode codec or caches with unusual settings), and checked the same two ways.

mod common;
use common::value_files;
use diskcache::{Cache, FanoutCache, Json as JsonCodec, Key, SetOptions, Value};
use serde_json::{json, Value as Json};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Above the default `disk_min_file_size` (32 KiB): such values live in their own files.
const LARGE: usize = 100_000;

fn tmp() -> TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

/// Runs the tool with `args`, standard input `input`, output captured (so both stdout and
/// stderr are pipes, as in a script).
fn run_with(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_diskcache"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start diskcache");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    // Write from another thread: the child may fill its stdout pipe before reading all input.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait for diskcache");
    writer.join().expect("stdin writer");
    out
}

fn run(args: &[&str]) -> Output {
    run_with(args, b"")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the tool and requires exit status 0; returns stdout.
fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "diskcache {args:?} failed\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs the tool with `--json` and parses its output.
fn ok_json(args: &[&str]) -> Json {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ok(&all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

fn keys_of(dir: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["keys", dir];
    args.extend_from_slice(extra);
    ok(&args).lines().map(str::to_owned).collect()
}

fn large_bytes() -> Vec<u8> {
    (0..LARGE).map(|i| (i * 31 % 251) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// get / set / delete
// ---------------------------------------------------------------------------------------------

#[test]
fn set_then_get_round_trips_strings_integers_floats_and_bytes() {
    let t = tmp();
    let d = path(t.path());
    assert!(ok(&["set", d, "greeting", "hello world"]).contains("stored"));
    ok(&["set", d, "n", "--int", "-42"]);
    ok(&["set", d, "x", "--float", "2.5"]);
    ok(&["set", d, "raw", "--hex", "00ff10"]);
    assert_eq!(ok(&["get", d, "greeting"]), "hello world\n");
    assert_eq!(ok(&["get", d, "n"]), "-42\n");
    assert_eq!(ok(&["get", d, "x"]), "2.5\n");
    // Into a pipe, bytes come out raw; --hex shows them as hex.
    assert_eq!(run(&["get", d, "raw"]).stdout, vec![0, 0xff, 0x10]);
    assert_eq!(ok(&["get", d, "raw", "--hex"]), "00ff10\n");
    // The library reads what the tool stored, with the kinds the tool chose.
    let cache = Cache::open(t.path()).unwrap();
    assert_eq!(
        cache.get::<String>("greeting").unwrap().unwrap(),
        "hello world"
    );
    assert_eq!(cache.get_value("n").unwrap(), Some(Value::Int(-42)));
    assert_eq!(cache.get_value("x").unwrap(), Some(Value::Float(2.5)));
    assert_eq!(
        cache.get_value("raw").unwrap(),
        Some(Value::Bytes(vec![0, 0xff, 0x10]))
    );
}

#[test]
fn set_from_stdin_streams_a_large_value_into_a_value_file_and_get_returns_it_byte_for_byte() {
    let t = tmp();
    let d = path(t.path());
    let data = large_bytes();
    let o = run_with(&["set", d, "blob", "--stdin"], &data);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        value_files(t.path()).len(),
        1,
        "a large value gets its own file"
    );
    assert_eq!(run(&["get", d, "blob"]).stdout, data);
    // Small input is stored inline, like any small value.
    let o = run_with(&["set", d, "small", "--stdin"], b"tiny");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(value_files(t.path()).len(), 1);
    assert_eq!(run(&["get", d, "small"]).stdout, b"tiny");
}

#[test]
fn non_string_keys_are_given_with_key_int_key_hex_and_key_json() {
    let t = tmp();
    let d = path(t.path());
    ok(&["set", d, "--key-int", "7", "seven"]);
    ok(&["set", d, "--key-hex", "0001", "bytes key"]);
    ok(&["set", d, "--key-json", r#"[1,"a"]"#, "tuple key"]);
    ok(&["set", d, "--key-int", "-3", "minus three"]);
    let cache = Cache::open(t.path()).unwrap();
    assert_eq!(cache.get::<String>(7).unwrap().unwrap(), "seven");
    assert_eq!(
        cache
            .get::<String>(Key::Bytes(vec![0, 1]))
            .unwrap()
            .unwrap(),
        "bytes key"
    );
    assert_eq!(cache.get::<String>((1, "a")).unwrap().unwrap(), "tuple key");
    assert_eq!(ok(&["get", d, "--key-int", "-3"]), "minus three\n");
    assert_eq!(ok(&["get", d, "--key-json", "[1, \"a\"]"]), "tuple key\n");
    // The string "7" is another key than the integer 7.
    assert_eq!(run(&["get", d, "7"]).status.code(), Some(1));
}

#[test]
fn get_of_a_missing_or_expired_key_exits_1_and_says_so() {
    let t = tmp();
    let d = path(t.path());
    Cache::open(t.path())
        .unwrap()
        .set_with("old", "v", &SetOptions::new().expire(Duration::ZERO))
        .unwrap();
    let o = run(&["get", d, "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let o = run(&["get", d, "old"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("expired"), "{}", stderr(&o));
}

#[test]
fn get_json_reports_kind_value_expiry_and_tag() {
    let t = tmp();
    let d = path(t.path());
    ok(&[
        "set", d, "k", "--int", "5", "--expire", "3600", "--tag", "group-a",
    ]);
    let before = secs(SystemTime::now());
    let v = ok_json(&["get", d, "k"]);
    assert_eq!(v["kind"], "int");
    assert_eq!(v["value"], 5);
    assert_eq!(v["key"]["value"], "k");
    assert_eq!(v["tag"]["value"], "group-a");
    let exp = v["expire_time"].as_f64().expect("expire time");
    assert!(exp > before + 3000.0 && exp < before + 3700.0, "{exp}");
    ok(&["set", d, "plain", "text"]);
    let v = ok_json(&["get", d, "plain"]);
    assert_eq!(v["value"], "text");
    assert_eq!(v["expire_time"], Json::Null);
    assert_eq!(v["tag"], Json::Null);
}

#[test]
fn get_through_the_tool_counts_no_hit_and_changes_no_statistics() {
    let t = tmp();
    let d = path(t.path());
    let cache = Cache::builder().statistics(true).open(t.path()).unwrap();
    cache.set("k", "v").unwrap();
    ok(&["get", d, "k"]);
    let _ = run(&["get", d, "missing"]);
    assert_eq!(cache.stats(true, false).unwrap(), (0, 0));
}

#[test]
fn delete_removes_the_key_and_exits_1_when_it_was_absent() {
    let t = tmp();
    let d = path(t.path());
    ok(&["set", d, "a", "1"]);
    assert!(ok(&["delete", d, "a"]).contains("deleted"));
    assert_eq!(run(&["get", d, "a"]).status.code(), Some(1));
    let o = run(&["delete", d, "a"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not found"));
    let v = ok_json(&["set", d, "b", "2"]);
    assert_eq!(v["stored"], true);
    assert_eq!(ok_json(&["delete", d, "b"])["deleted"], true);
}

#[test]
fn set_tags_and_expiry_are_stored_as_the_library_sees_them() {
    let t = tmp();
    let d = path(t.path());
    ok(&[
        "set",
        d,
        "k",
        "v",
        "--expire",
        "600",
        "--tag-int",
        "--tag",
        "9",
    ]);
    let e = Cache::open(t.path())
        .unwrap()
        .get_entry::<String>("k")
        .unwrap()
        .unwrap();
    assert_eq!(e.tag, Some(Key::Int(9)));
    let left = e
        .expire_time
        .unwrap()
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(left > Duration::from_secs(500) && left <= Duration::from_secs(600));
}

// ---------------------------------------------------------------------------------------------
// keys
// ---------------------------------------------------------------------------------------------

#[test]
fn keys_lists_insertion_order_by_default_and_sorted_order_on_request() {
    let t = tmp();
    let d = path(t.path());
    for k in ["c", "a", "b"] {
        ok(&["set", d, k, "v"]);
    }
    ok(&["set", d, "--key-int", "5", "v"]);
    assert_eq!(keys_of(d, &[]), [r#""c""#, r#""a""#, r#""b""#, "5"]);
    assert_eq!(
        keys_of(d, &["--reverse"]),
        ["5", r#""b""#, r#""a""#, r#""c""#]
    );
    assert_eq!(
        keys_of(d, &["--sorted"]),
        ["5", r#""a""#, r#""b""#, r#""c""#]
    );
    assert_eq!(
        keys_of(d, &["--sorted", "--reverse"]),
        [r#""c""#, r#""b""#, r#""a""#, "5"]
    );
}

#[test]
fn keys_prefix_and_limit_select_string_keys_in_either_order() {
    let t = tmp();
    let d = path(t.path());
    let cache = Cache::open(t.path()).unwrap();
    for k in ["user:2", "page:1", "user:1", "user:3", "usex", "page:2"] {
        cache.set(k, 1).unwrap();
    }
    cache.set(42, 1).unwrap();
    cache.set(Key::Bytes(b"user:9".to_vec()), 1).unwrap();
    assert_eq!(
        keys_of(d, &["--prefix", "user:"]),
        [r#""user:2""#, r#""user:1""#, r#""user:3""#]
    );
    assert_eq!(
        keys_of(d, &["--sorted", "--prefix", "user:"]),
        [r#""user:1""#, r#""user:2""#, r#""user:3""#]
    );
    assert_eq!(
        keys_of(d, &["--sorted", "--reverse", "--prefix", "user:"]),
        [r#""user:3""#, r#""user:2""#, r#""user:1""#]
    );
    assert_eq!(
        keys_of(d, &["--sorted", "--prefix", "user:", "--limit", "2"]),
        [r#""user:1""#, r#""user:2""#]
    );
    assert_eq!(keys_of(d, &["--limit", "3"]).len(), 3);
    assert!(keys_of(d, &["--limit", "0"]).is_empty());
}

#[test]
fn keys_json_gives_each_key_an_encoding_that_key_encoded_reads_back() {
    let t = tmp();
    let d = path(t.path());
    let cache = Cache::open(t.path()).unwrap();
    let composite = (1, "x", vec![1.5, 2.5]);
    cache.set(composite.clone(), "found me").unwrap();
    let out = ok(&["--json", "keys", d]);
    let line: Json = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["kind"], "composite");
    assert_eq!(line["value"], json!([1, "x", [1.5, 2.5]]));
    let enc = line["encoded"].as_str().unwrap();
    assert_eq!(ok(&["get", d, "--key-encoded", enc]), "found me\n");
}

// ---------------------------------------------------------------------------------------------
// stats, check
// ---------------------------------------------------------------------------------------------

#[test]
fn stats_json_reports_count_volume_settings_statistics_files_and_dead_space() {
    let t = tmp();
    let d = path(t.path());
    let cache = Cache::builder()
        .statistics(true)
        .size_limit(50 << 20)
        .open(t.path())
        .unwrap();
    for i in 0..100 {
        cache.set(i, "value").unwrap();
    }
    cache.set("big", large_bytes()).unwrap();
    for i in 0..150 {
        cache.get::<String>(i).unwrap();
    }
    let s = ok_json(&["stats", d]);
    assert_eq!(s["layout"], "cache");
    assert_eq!(s["codec"], "bincode2");
    assert_eq!(s["count"], 101);
    assert_eq!(s["volume"], cache.volume().unwrap());
    assert_eq!(s["size_limit"], 50 << 20);
    assert_eq!(s["settings"]["statistics"], true);
    assert_eq!(
        s["effective_settings"]["eviction_policy"],
        "least-recently-stored"
    );
    assert_eq!(s["hits"], 100);
    assert_eq!(s["misses"], 50);
    assert_eq!(s["files"]["meta"]["files"], 1);
    assert_eq!(s["files"]["values"]["files"], 1);
    assert!(s["files"]["values"]["bytes"].as_u64().unwrap() >= LARGE as u64);
    assert!(s["files"]["log"]["files"].as_u64().unwrap() >= 1);
    let ratio = s["dead_space_ratio"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&ratio), "{ratio}");
    assert!(s["log_bytes_since_checkpoint"].as_u64().unwrap() > 0);
}

#[test]
fn stats_human_output_names_the_directory_and_the_numbers() {
    let t = tmp();
    let d = path(t.path());
    ok(&["set", d, "a", "1"]);
    let out = ok(&["stats", d]);
    assert!(out.starts_with(d), "{out}");
    assert!(out.contains("items          1"), "{out}");
    assert!(out.contains("dead space"), "{out}");
    assert!(out.contains("eviction_policy"), "{out}");
    assert!(out.contains("hits/misses"), "{out}");
}

#[test]
fn opening_with_the_tool_never_changes_stored_settings() {
    let t = tmp();
    let d = path(t.path());
    let cache = Cache::builder()
        .size_limit(12345)
        .cull_limit(3)
        .tag_index(true)
        .open(t.path())
        .unwrap();
    cache.set("k", "v").unwrap();
    let before = cache.settings().unwrap();
    ok(&["stats", d]);
    ok(&["keys", d]);
    ok(&["get", d, "k"]);
    ok(&["set", d, "k2", "v"]);
    assert_eq!(cache.settings().unwrap(), before);
}

#[test]
fn check_on_a_healthy_cache_prints_no_problems_and_exits_0() {
    let t = tmp();
    let d = path(t.path());
    ok(&["set", d, "a", "1"]);
    assert!(ok(&["check", d]).contains("no problems found"));
    let v = ok_json(&["check", d]);
    assert_eq!(v["problems"], 0);
}

#[test]
fn check_finds_a_deleted_value_file_exits_1_and_fix_repairs_it() {
    let t = tmp();
    let d = path(t.path());
    assert_eq!(
        run_with(&["set", d, "blob", "--stdin"], &large_bytes())
            .status
            .code(),
        Some(0)
    );
    ok(&["set", d, "other", "kept"]);
    // An application keeps the cache open meanwhile. (Were the cache closed, the next open
    // would recover it, and recovery ends the log at a transaction whose new value file is
    // missing, as after a power loss.)
    let _app = Cache::open(t.path()).unwrap();
    let files = value_files(t.path());
    assert_eq!(files.len(), 1);
    std::fs::remove_file(&files[0]).unwrap();
    let o = run(&["check", d]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("MissingFile"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("(fixed)"));
    let o = run(&["check", d, "--fix"]);
    assert_eq!(o.status.code(), Some(1), "problems were found");
    assert!(stdout(&o).contains("(fixed)"), "{}", stdout(&o));
    assert!(ok(&["check", d]).contains("no problems found"));
    assert_eq!(run(&["get", d, "blob"]).status.code(), Some(1));
    assert_eq!(ok(&["get", d, "other"]), "kept\n");
}

// ---------------------------------------------------------------------------------------------
// expire, cull, evict, clear, compact
// ---------------------------------------------------------------------------------------------

#[test]
fn expire_removes_only_expired_items_and_prints_the_count() {
    let t = tmp();
    let d = path(t.path());
    let cache = Cache::builder().cull_limit(0).open(t.path()).unwrap();
    for i in 0..30 {
        let opts = if i < 12 {
            SetOptions::new().expire(Duration::ZERO)
        } else {
            SetOptions::new().expire(DAY)
        };
        cache.set_with(i, i, &opts).unwrap();
    }
    assert_eq!(ok(&["expire", d]), "12 expired items removed\n");
    assert_eq!(cache.len().unwrap(), 18);
    assert_eq!(ok_json(&["expire", d])["removed"], 0);
}

#[test]
fn cull_brings_the_volume_under_the_size_limit_and_prints_the_count() {
    let t = tmp();
    let d = path(t.path());
    let cache = Cache::builder()
        .size_limit(200_000)
        .cull_limit(0)
        .open(t.path())
        .unwrap();
    for i in 0..400 {
        cache.set(i, vec![7u8; 1000]).unwrap();
    }
    assert!(cache.volume().unwrap() > 200_000);
    let v = ok_json(&["cull", d]);
    assert!(v["removed"].as_u64().unwrap() > 0);
    assert!(cache.volume().unwrap() <= 200_000);
    assert_eq!(
        v["removed"].as_u64().unwrap() + cache.len().unwrap(),
        400,
        "the count is what went"
    );
}

#[test]
fn evict_removes_the_items_of_one_tag_and_prints_the_count() {
    let t = tmp();
    let d = path(t.path());
    let cache = Cache::open(t.path()).unwrap();
    for i in 0..20 {
        let tag = if i % 4 == 0 { "red" } else { "blue" };
        cache.set_with(i, i, &SetOptions::new().tag(tag)).unwrap();
    }
    cache.set_with("n", 1, &SetOptions::new().tag(3)).unwrap();
    assert_eq!(ok(&["evict", d, "red"]), "5 items evicted\n");
    assert_eq!(ok(&["evict", d, "--tag-int", "3"]), "1 items evicted\n");
    assert_eq!(cache.len().unwrap(), 15);
    assert_eq!(ok_json(&["evict", d, "green"])["removed"], 0);
}

#[test]
fn clear_removes_everything_without_asking_and_prints_the_count() {
    let t = tmp();
    let d = path(t.path());
    let cache = Cache::open(t.path()).unwrap();
    for i in 0..2500 {
        cache.set(i, i).unwrap();
    }
    assert_eq!(ok(&["clear", d]), "2500 items removed\n");
    assert_eq!(cache.len().unwrap(), 0);
    assert!(keys_of(d, &[]).is_empty());
}

#[test]
fn compact_reclaims_the_index_space_of_removed_items() {
    let t = tmp();
    let d = path(t.path());
    let cache = Cache::builder()
        .checkpoint_bytes(64 << 10)
        .open(t.path())
        .unwrap();
    for i in 0..20_000 {
        cache.set(i, "some value of a modest size").unwrap();
    }
    for i in 0..19_000 {
        cache.delete(i).unwrap();
    }
    let v = ok_json(&["compact", d]);
    let before = v["index_bytes_before"].as_u64().unwrap();
    let after = v["index_bytes_after"].as_u64().unwrap();
    assert!(after < before, "{v}");
    assert_eq!(cache.len().unwrap(), 1000);
    assert_eq!(
        cache.get::<String>(19_500).unwrap().unwrap(),
        "some value of a modest size"
    );
    assert!(ok(&["check", d]).contains("no problems found"));
}

// ---------------------------------------------------------------------------------------------
// dump / load
// ---------------------------------------------------------------------------------------------

/// Fills a cache with one entry of every kind, with and without expiry and tags.
fn fill_every_kind(cache: &Cache) {
    cache.set("str", "text").unwrap();
    cache
        .set_with("int", -7, &SetOptions::new().tag("numbers"))
        .unwrap();
    cache
        .set_with(2.5, 1.25, &SetOptions::new().expire(DAY).tag(("t", 1)))
        .unwrap();
    cache
        .set(Key::Bytes(vec![0, 1, 2]), Key::Bytes(vec![9; 10]))
        .unwrap();
    cache.set(("tuple", 1), vec![1u32, 2, 3]).unwrap();
    cache
        .set_with("large", large_bytes(), &SetOptions::new().expire(DAY))
        .unwrap();
}

/// Every entry of a cache: key, value, expire time (seconds), tag.
fn entries(dir: &Path) -> Vec<(Key, Value, Option<f64>, Option<Key>)> {
    let cache = Cache::open(dir).unwrap();
    let mut out = Vec::new();
    for k in cache.iterkeys() {
        let k = k.unwrap();
        let e = cache.get_value_entry(&k).unwrap().unwrap();
        out.push((k, e.value, e.expire_time.map(secs), e.tag));
    }
    out
}

fn assert_same_entries(a: &Path, b: &Path) {
    let (ea, eb) = (entries(a), entries(b));
    assert_eq!(ea.len(), eb.len());
    for (x, y) in ea.iter().zip(&eb) {
        assert_eq!(x.0, y.0);
        assert_eq!(x.1, y.1, "value of {}", x.0);
        assert_eq!(x.3, y.3, "tag of {}", x.0);
        match (x.2, y.2) {
            (Some(p), Some(q)) => assert!((p - q).abs() < 1e-3, "expiry of {}", x.0),
            (p, q) => assert_eq!(p, q, "expiry of {}", x.0),
        }
    }
}

#[test]
fn dump_then_load_into_a_new_directory_gives_equal_entries() {
    let t = tmp();
    let src = t.path().join("src");
    let dst = t.path().join("dst");
    let file = t.path().join("backup.dump");
    fill_every_kind(&Cache::builder().tag_index(true).open(&src).unwrap());
    let out = ok(&["dump", path(&src), "-o", path(&file)]);
    assert!(out.contains("dumped 6 entries"), "{out}");
    assert!(!t.path().join("backup.dump.partial").exists());
    assert_eq!(&std::fs::read(&file).unwrap()[..8], b"DCDUMP\0\x01");
    let out = ok(&["load", path(&dst), "-i", path(&file)]);
    assert!(out.contains("loaded 6 entries"), "{out}");
    assert_same_entries(&src, &dst);
    assert_eq!(
        value_files(&dst).len(),
        1,
        "the large value has its own file"
    );
    // The new cache takes the source's stored settings.
    assert!(Cache::open(&dst).unwrap().tag_index_enabled().unwrap());
    assert!(ok(&["check", path(&dst)]).contains("no problems found"));
}

#[test]
fn dump_never_follows_a_link_or_overwrites_a_partial_file() {
    let t = tmp();
    let src = t.path().join("src");
    fill_every_kind(&Cache::open(&src).unwrap());
    let file = t.path().join("backup.dump");
    let partial = t.path().join("backup.dump.partial");
    // A link planted under the partial name, to a file the dump would clobber.
    let victim = t.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    std::os::unix::fs::symlink(&victim, &partial).unwrap();
    let o = run(&["dump", path(&src), "-o", path(&file)]);
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!file.exists());
    // Another dump's partial file is not truncated either.
    std::fs::remove_file(&partial).unwrap();
    std::fs::write(&partial, b"another dump in progress").unwrap();
    let o = run(&["dump", path(&src), "-o", path(&file)]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("exists"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&partial).unwrap(),
        b"another dump in progress"
    );
    std::fs::remove_file(&partial).unwrap();
    ok(&["dump", path(&src), "-o", path(&file)]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600,
        "a dump holds the cache's data: owner only"
    );
}

#[test]
fn repair_rebuilds_a_missing_meta_file_and_check_finds_nothing_lost() {
    let t = tmp();
    let dir = t.path().join("c");
    fill_every_kind(&Cache::open(&dir).unwrap());
    std::fs::remove_file(dir.join("meta")).unwrap();
    let o = run(&["check", path(&dir)]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("meta"), "{}", stderr(&o));
    let out = ok(&["repair", path(&dir)]);
    assert!(out.contains("rebuilt"), "{out}");
    assert!(ok(&["check", path(&dir)]).contains("no problems found"));
    assert!(ok(&["repair", path(&dir)]).contains("nothing to repair"));
    assert_eq!(Cache::open(&dir).unwrap().len().unwrap(), 6);
}

#[test]
fn dump_to_stdout_pipes_into_load_from_stdin() {
    let t = tmp();
    let src = t.path().join("src");
    let dst = t.path().join("dst");
    fill_every_kind(&Cache::open(&src).unwrap());
    let o = run(&["dump", path(&src)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("dumped 6 entries"), "{}", stderr(&o));
    let l = run_with(&["--json", "load", path(&dst)], &o.stdout);
    assert_eq!(l.status.code(), Some(0), "{}", stderr(&l));
    let v: Json = serde_json::from_slice(&l.stdout).unwrap();
    assert_eq!(v["loaded"], 6);
    assert_same_entries(&src, &dst);
}

#[test]
fn dump_keeps_expired_entries_and_load_skips_them_unless_keep_expired() {
    let t = tmp();
    let src = t.path().join("src");
    let file = t.path().join("d");
    let cache = Cache::builder().cull_limit(0).open(&src).unwrap();
    cache.set("live", 1).unwrap();
    cache
        .set_with("gone", 2, &SetOptions::new().expire(Duration::ZERO))
        .unwrap();
    ok(&["dump", path(&src), "-o", path(&file)]);
    let v = ok_json(&["load", path(&t.path().join("a")), "-i", path(&file)]);
    assert_eq!(v["loaded"], 1);
    assert_eq!(v["skipped_expired"], 1);
    let v = ok_json(&[
        "load",
        path(&t.path().join("b")),
        "-i",
        path(&file),
        "--keep-expired",
    ]);
    assert_eq!(v["loaded"], 2);
    let b = Cache::open(t.path().join("b")).unwrap();
    assert_eq!(b.len().unwrap(), 2);
    assert_eq!(b.get::<i64>("gone").unwrap(), None, "still expired");
}

#[test]
fn load_of_a_truncated_dump_fails_naming_the_entry_and_keeps_the_entries_before_it() {
    let t = tmp();
    let src = t.path().join("src");
    let dst = t.path().join("dst");
    let cache = Cache::open(&src).unwrap();
    for i in 0..4 {
        cache.set(i, format!("value {i}")).unwrap();
    }
    cache.set("last", large_bytes()).unwrap();
    let o = run(&["dump", path(&src)]);
    assert_eq!(o.status.code(), Some(0));
    let full = o.stdout;
    // Cut inside the last (large) value.
    let cut = &full[..full.len() - LARGE / 2];
    let l = run_with(&["load", path(&dst)], cut);
    assert_eq!(l.status.code(), Some(2));
    let err = stderr(&l);
    assert!(err.contains(path(&dst)), "{err}");
    assert!(err.contains("dump entry 5"), "{err}");
    assert!(err.contains("byte offset"), "{err}");
    assert!(err.contains("truncated"), "{err}");
    assert!(err.contains("4 entries before it were loaded"), "{err}");
    let loaded = Cache::open(&dst).unwrap();
    assert_eq!(loaded.len().unwrap(), 4);
    assert_eq!(loaded.get::<String>(3).unwrap().unwrap(), "value 3");
    // A stream cut right after the header loads nothing and says so.
    let header_only = run_with(&["load", path(&t.path().join("x"))], &full[..40]);
    assert_eq!(header_only.status.code(), Some(2));
}

#[test]
fn load_of_a_corrupted_dump_fails_with_the_entry_number_and_offset() {
    let t = tmp();
    let src = t.path().join("src");
    let dst = t.path().join("dst");
    let cache = Cache::open(&src).unwrap();
    cache.set("one", "first value").unwrap();
    cache.set("two", "second value").unwrap();
    cache.set("three", "MARKER-THREE").unwrap();
    cache.set("four", "fourth value").unwrap();
    let mut bytes = run(&["dump", path(&src)]).stdout;
    let at = bytes
        .windows(12)
        .position(|w| w == b"MARKER-THREE")
        .expect("the value is in the dump");
    bytes[at + 3] ^= 0x20;
    let l = run_with(&["load", path(&dst)], &bytes);
    assert_eq!(l.status.code(), Some(2));
    let err = stderr(&l);
    assert!(err.contains("dump entry 3"), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
    let offset: usize = err
        .split("byte offset ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {err}"));
    assert!(offset > 0 && offset < at, "{offset} vs {at}");
    assert!(err.contains("2 entries before it were loaded"), "{err}");
    assert_eq!(Cache::open(&dst).unwrap().len().unwrap(), 2);
    // Not a dump at all.
    let l = run_with(&["load", path(&t.path().join("y"))], b"hello, world");
    assert_eq!(l.status.code(), Some(2));
    assert!(
        stderr(&l).contains("not a diskcache dump"),
        "{}",
        stderr(&l)
    );
}

#[test]
fn load_refuses_encoded_values_into_a_cache_of_another_codec() {
    let t = tmp();
    let src = t.path().join("src");
    let file = t.path().join("d");
    let json_cache = Cache::builder().codec(JsonCodec).open(&src).unwrap();
    json_cache.set("plain", "text").unwrap();
    json_cache.set("doc", json!({"a": [1, 2]})).unwrap();
    ok(&["dump", path(&src), "-o", path(&file)]);
    // Into an existing bincode cache: the encoded value is refused, with a reason.
    let other = t.path().join("bincode");
    Cache::open(&other).unwrap().set("x", 1).unwrap();
    let l = run(&["load", path(&other), "-i", path(&file)]);
    assert_eq!(l.status.code(), Some(2));
    let err = stderr(&l);
    assert!(err.contains("codec"), "{err}");
    assert!(err.contains("dump entry 2"), "{err}");
    // Into a new directory: the cache is created with the dump's codec.
    let fresh = t.path().join("fresh");
    ok(&["load", path(&fresh), "-i", path(&file)]);
    let c = Cache::builder().codec(JsonCodec).open(&fresh).unwrap();
    assert_eq!(c.get::<Json>("doc").unwrap().unwrap(), json!({"a": [1, 2]}));
}

// ---------------------------------------------------------------------------------------------
// Layouts and codecs
// ---------------------------------------------------------------------------------------------

#[test]
fn fanout_directories_are_detected_and_every_command_works_on_them() {
    let t = tmp();
    let d = path(t.path());
    let fanout = FanoutCache::builder().shards(4).open(t.path()).unwrap();
    for i in 0..40 {
        fanout.set(i, format!("v{i}")).unwrap();
    }
    fanout
        .set_with("tagged", 1, &SetOptions::new().tag("t"))
        .unwrap();
    assert_eq!(ok(&["get", d, "--key-int", "17"]), "v17\n");
    ok(&["set", d, "from-cli", "hello"]);
    assert_eq!(fanout.get::<String>("from-cli").unwrap().unwrap(), "hello");
    assert_eq!(keys_of(d, &["--sorted"]).len(), 42);
    let s = ok_json(&["stats", d]);
    assert_eq!(s["layout"], "fanout");
    assert_eq!(s["shards"], 4);
    assert_eq!(s["count"], 42);
    assert_eq!(s["per_shard"].as_array().unwrap().len(), 4);
    assert_eq!(s["files"]["meta"]["files"], 4);
    assert!(ok(&["stats", d]).contains("fanout cache, 4 shards"));
    assert_eq!(ok(&["evict", d, "t"]), "1 items evicted\n");
    assert!(ok(&["check", d]).contains("no problems found"));
    // Dump and load keep the layout.
    let file = t.path().join("f.dump");
    let dst = t.path().join("copy");
    ok(&["dump", d, "-o", path(&file)]);
    ok(&["load", path(&dst), "-i", path(&file)]);
    let copy = FanoutCache::open(&dst).unwrap();
    assert_eq!(copy.shard_count(), 4);
    assert_eq!(copy.len().unwrap(), 41);
    assert_eq!(copy.get::<String>(33).unwrap().unwrap(), "v33");
    assert_eq!(ok(&["clear", d]), "41 items removed\n");
    assert_eq!(fanout.len().unwrap(), 0);
}

#[test]
fn load_shards_and_plain_choose_the_layout_of_a_new_directory() {
    let t = tmp();
    let src = t.path().join("src");
    let file = t.path().join("d");
    let c = Cache::open(&src).unwrap();
    for i in 0..10 {
        c.set(i, i).unwrap();
    }
    ok(&["dump", path(&src), "-o", path(&file)]);
    let f = t.path().join("fan");
    ok(&["load", path(&f), "-i", path(&file), "--shards", "3"]);
    assert_eq!(FanoutCache::open(&f).unwrap().len().unwrap(), 10);
    assert_eq!(ok_json(&["stats", path(&f)])["shards"], 3);
    // On an existing cache the layout cannot be chosen.
    let l = run(&["load", path(&src), "-i", path(&file), "--plain"]);
    assert_eq!(l.status.code(), Some(2));
}

#[test]
fn json_codec_caches_show_encoded_values_as_json_and_accept_value_json() {
    let t = tmp();
    let d = path(t.path());
    let cache = Cache::builder().codec(JsonCodec).open(t.path()).unwrap();
    cache.set("doc", json!({"name": "x", "n": [1, 2]})).unwrap();
    let out: Json = serde_json::from_str(&ok(&["get", d, "doc"])).unwrap();
    assert_eq!(out, json!({"name": "x", "n": [1, 2]}));
    let v = ok_json(&["get", d, "doc"]);
    assert_eq!(v["kind"], "encoded");
    assert_eq!(v["value"]["n"], json!([1, 2]));
    ok(&["set", d, "cfg", "--value-json", r#"{"on": true}"#]);
    assert_eq!(
        cache.get::<Json>("cfg").unwrap().unwrap(),
        json!({"on": true})
    );
    assert_eq!(ok_json(&["stats", d])["codec"], "json");
}

#[test]
fn bincode_encoded_values_print_as_hex_with_a_note() {
    let t = tmp();
    let d = path(t.path());
    let cache = Cache::open(t.path()).unwrap();
    cache.set("v", vec![1u32, 2, 3]).unwrap();
    let o = run(&["get", d, "v"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "03010203\n");
    assert!(stderr(&o).contains("bincode2"), "{}", stderr(&o));
    let o = run(&["set", d, "j", "--value-json", "[1]"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "--value-json needs the json codec"
    );
}

// ---------------------------------------------------------------------------------------------
// Concurrency, pipes, errors, bench
// ---------------------------------------------------------------------------------------------

#[test]
fn the_tool_works_on_a_directory_another_handle_is_writing_to() {
    let t = tmp();
    let d = path(t.path()).to_owned();
    let cache = Cache::open(t.path()).unwrap();
    for i in 0..500 {
        cache.set(i, "seed").unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let cache = cache.clone();
        let stop = Arc::clone(&stop);
        let writes = Arc::clone(&writes);
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                cache.set(1000 + i % 2000, format!("w{i}")).unwrap();
                if i.is_multiple_of(7) {
                    cache.delete(1000 + (i / 2) % 2000).unwrap();
                }
                i += 1;
                writes.store(i, Ordering::Relaxed);
            }
        })
    };
    // Let the writer get going before the tool runs.
    while writes.load(Ordering::Relaxed) < 100 {
        std::thread::yield_now();
    }
    for round in 0..3 {
        let key = format!("cli-{round}");
        ok(&["set", &d, &key, "from the tool"]);
        assert_eq!(ok(&["get", &d, &key]), "from the tool\n");
        assert!(keys_of(&d, &["--sorted"]).len() >= 500);
        let s = ok_json(&["stats", &d]);
        assert!(s["count"].as_u64().unwrap() >= 500);
        let o = run(&["dump", &d]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(ok(&["check", &d]).contains("no problems found"));
        assert_eq!(
            cache.get::<String>(&key).unwrap().as_deref(),
            Some("from the tool")
        );
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(ok(&["check", &d]).contains("no problems found"));
}

#[test]
fn reads_go_on_while_another_process_holds_the_writer_lock_and_writes_time_out_clearly() {
    let t = tmp();
    let d = path(t.path()).to_owned();
    let cache = Cache::open(t.path()).unwrap();
    cache.set("k", "v").unwrap();
    cache
        .transact(|| {
            cache.set("pending", "not yet committed")?;
            // Inside the transaction this handle holds the writer lock.
            assert_eq!(ok(&["get", &d, "k"]), "v\n");
            assert_eq!(ok_json(&["stats", &d])["count"], 1);
            assert_eq!(run(&["get", &d, "pending"]).status.code(), Some(1));
            let o = run(&["--timeout", "0.2", "set", &d, "k2", "v"]);
            assert_eq!(o.status.code(), Some(2));
            assert!(stderr(&o).contains("timed out"), "{}", stderr(&o));
            assert!(stderr(&o).contains(&d), "{}", stderr(&o));
            Ok(())
        })
        .unwrap();
    assert_eq!(ok(&["get", &d, "pending"]), "not yet committed\n");
    ok(&["set", &d, "k2", "v"]);
}

#[test]
fn piped_output_carries_no_progress_bar_escape_codes() {
    let t = tmp();
    let src = t.path().join("src");
    let cache = Cache::open(&src).unwrap();
    for i in 0..12_000 {
        cache.set(i, "v").unwrap();
    }
    let file = t.path().join("d");
    let runs = [
        run(&["dump", path(&src), "-o", path(&file)]),
        run(&["load", path(&t.path().join("dst")), "-i", path(&file)]),
        run(&["check", path(&src)]),
        run(&["expire", path(&src)]),
        run(&["compact", path(&src)]),
        run(&["clear", path(&src)]),
        run(&["bench", "--ops", "300"]),
    ];
    for o in &runs {
        assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
        for stream in [&o.stdout, &o.stderr] {
            assert!(!stream.contains(&0x1b), "escape code in {:?}", stdout(o));
            assert!(
                !stream.contains(&b'\r'),
                "carriage return in {:?}",
                stdout(o)
            );
        }
    }
}

#[test]
fn errors_exit_2_and_name_the_directory() {
    let t = tmp();
    let missing = t.path().join("no-such-cache");
    let o = run(&["stats", path(&missing)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains(path(&missing)), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    assert!(!missing.exists(), "reading commands create nothing");
    // A directory that holds something else is not taken for a cache.
    let other = t.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "hi").unwrap();
    let o = run(&["set", path(&other), "k", "v"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not a cache directory"),
        "{}",
        stderr(&o)
    );
    // Usage errors.
    assert_eq!(run(&["get"]).status.code(), Some(2));
    assert_eq!(run(&["set", path(&other), "k"]).status.code(), Some(2));
    let o = run(&["set", path(&t.path().join("c")), "k", "x", "--int"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not a 64-bit integer"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bench_reports_median_p90_and_p99_per_operation() {
    let t = tmp();
    let dir = t.path().join("bench");
    let v = ok_json(&[
        "bench",
        "--ops",
        "500",
        "--value-size",
        "64",
        "--dir",
        path(&dir),
    ]);
    assert_eq!(v["ops"], 500);
    for op in ["set", "get", "delete"] {
        let r = &v["results"][op];
        let (m, p90, p99) = (
            r["median_ns"].as_u64().unwrap(),
            r["p90_ns"].as_u64().unwrap(),
            r["p99_ns"].as_u64().unwrap(),
        );
        assert!(m <= p90 && p90 <= p99, "{op}: {r}");
        assert!(p99 <= r["max_ns"].as_u64().unwrap(), "{op}: {r}");
    }
    assert!(
        !dir.exists(),
        "the benchmark cache is removed unless --keep"
    );
    let out = ok(&["bench", "--ops", "100"]);
    assert!(out.contains("median") && out.contains("p99"), "{out}");
}
