//! Multi-process behaviour, with real processes: this binary runs the tests, and re-runs
//! itself (with `DC_ROLE` set) as the child processes they spawn. Children and parent
//! synchronise over pipes, never by sleeping.

mod common;
use common::children::{spawn_self, Lines};
use diskcache::recipes::{Acquire, Lock};
use diskcache::{Cache, Deque, Error, FanoutCache, SyncLevel};
use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin};
use std::sync::mpsc;
use std::time::Duration;

const ROLE: &str = "DC_ROLE";

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let args: Vec<String> = std::env::args().skip(1).collect();
        child(&role, &args);
        return;
    }
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let tests: &[(&str, fn())] = &[
        (
            "incr_from_many_processes_loses_no_increment",
            incr_from_many_processes_loses_no_increment,
        ),
        (
            "add_from_many_processes_succeeds_exactly_once_per_key",
            add_from_many_processes_succeeds_exactly_once_per_key,
        ),
        (
            "a_write_in_one_process_is_seen_by_an_open_handle_in_another",
            a_write_in_one_process_is_seen_by_an_open_handle_in_another,
        ),
        (
            "a_read_completes_while_another_process_holds_a_long_transaction",
            a_read_completes_while_another_process_holds_a_long_transaction,
        ),
        (
            "readers_in_other_processes_never_see_half_a_transaction",
            readers_in_other_processes_never_see_half_a_transaction,
        ),
        (
            "a_writer_killed_while_writing_loses_no_commit_and_frees_the_lock",
            a_writer_killed_while_writing_loses_no_commit_and_frees_the_lock,
        ),
        (
            "a_writer_waits_for_another_process_and_times_out",
            a_writer_waits_for_another_process_and_times_out,
        ),
        (
            "a_deque_between_a_producer_and_a_consumer_process_loses_and_duplicates_nothing",
            a_deque_between_a_producer_and_a_consumer_process_loses_and_duplicates_nothing,
        ),
        (
            "a_deque_shared_by_two_producers_and_two_consumers_delivers_each_item_once",
            a_deque_shared_by_two_producers_and_two_consumers_delivers_each_item_once,
        ),
        (
            "a_counter_guarded_by_a_lock_in_many_processes_loses_no_update",
            a_counter_guarded_by_a_lock_in_many_processes_loses_no_update,
        ),
        (
            "fanout_incr_from_many_processes_with_retry_loses_no_increment",
            fanout_incr_from_many_processes_with_retry_loses_no_increment,
        ),
    ];
    let mut failed = 0;
    let mut ran = 0;
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        ran += 1;
        print!("test {name} ... ");
        let _ = std::io::stdout().flush();
        match std::panic::catch_unwind(test) {
            Ok(()) => println!("ok"),
            Err(_) => {
                println!("FAILED");
                failed += 1;
            }
        }
    }
    println!(
        "\ntest result: {}. {} passed; {failed} failed",
        if failed == 0 { "ok" } else { "FAILED" },
        ran - failed
    );
    if failed > 0 {
        std::process::exit(1);
    }
}

fn spawn(role: &str, args: &[&str]) -> Child {
    spawn_self(ROLE, role, args)
}

fn tell(stdin: &mut ChildStdin, line: &str) {
    writeln!(stdin, "{line}").expect("write to child");
    stdin.flush().expect("flush");
}

fn wait_ok(mut c: Child) {
    let status = c.wait().expect("wait");
    assert!(status.success(), "child failed: {status}");
}

fn read_line_stdin() -> String {
    let mut s = String::new();
    std::io::stdin().read_line(&mut s).expect("read stdin");
    s.trim().to_owned()
}

fn child(role: &str, args: &[String]) {
    let dir = Path::new(&args[0]);
    match role {
        "incr" => {
            let cache = Cache::open(dir).expect("open");
            let n: u64 = args[1].parse().expect("n");
            for _ in 0..n {
                cache.incr(&b"counter"[..], 1).expect("incr");
            }
        }
        "add" => {
            let cache = Cache::open(dir).expect("open");
            let me: u64 = args[1].parse().expect("id");
            let mut won = 0;
            for k in 0..500u64 {
                if cache.add(k, me).expect("add") {
                    won += 1;
                }
            }
            println!("{won}");
        }
        "set_then_report" => {
            let cache = Cache::open(dir).expect("open");
            cache.set(args[1].as_str(), args[2].as_str()).expect("set");
            println!("done");
        }
        "read_on_request" => {
            let cache = Cache::open(dir).expect("open");
            println!("open");
            loop {
                let key = read_line_stdin();
                if key.is_empty() {
                    break;
                }
                let v: Option<String> = cache.get(key.as_str()).expect("get");
                println!("{}", v.unwrap_or_else(|| "<none>".into()));
            }
        }
        "hold_transaction" => {
            let cache = Cache::open(dir).expect("open");
            cache
                .transact(|| {
                    cache.set("k", "new")?;
                    cache.set("other", "x")?;
                    println!("holding");
                    // Hold the writer lock until the parent says so.
                    assert_eq!(read_line_stdin(), "commit");
                    Ok(())
                })
                .expect("transact");
            println!("committed");
        }
        "batches" => {
            // Each transaction adds 100 keys (of 20 KiB inline values: several frames).
            let cache = Cache::builder()
                .min_file_size(1 << 20)
                .open(dir)
                .expect("open");
            let rounds: u64 = args[1].parse().expect("rounds");
            let value = vec![7u8; 20 << 10];
            for r in 0..rounds {
                cache
                    .transact(|| {
                        for i in 0..100 {
                            cache.set(r * 100 + i, &value[..])?;
                        }
                        Ok(())
                    })
                    .expect("batch");
            }
            println!("done");
        }
        "write_forever" => {
            let cache = Cache::builder()
                .sync(SyncLevel::Full)
                .open(dir)
                .expect("open");
            for i in 0u64.. {
                cache.set(i, i).expect("set");
                // Acknowledged: the parent may kill us at any time from now on.
                println!("{i}");
            }
        }
        "lock_and_wait" => {
            let cache = Cache::open(dir).expect("open");
            cache
                .transact(|| {
                    println!("locked");
                    assert_eq!(read_line_stdin(), "release");
                    Ok(())
                })
                .expect("transact");
        }
        "deque_produce" => {
            // Appends `n` numbers tagged with this producer's id, then counts itself done.
            let deque: Deque<(u64, u64)> = Deque::open(dir).expect("open deque");
            let id: u64 = args[1].parse().expect("id");
            let n: u64 = args[2].parse().expect("n");
            for i in 0..n {
                deque.append(&(id, i)).expect("append");
            }
            let side = Cache::open(Path::new(&args[3])).expect("open side cache");
            side.incr("producers_done", 1).expect("incr");
        }
        "deque_consume" => {
            // Pops until every producer is done and the deque is empty; prints a summary
            // (count, per-producer order check) and every item it received.
            let deque: Deque<(u64, u64)> = Deque::open(dir).expect("open deque");
            let side = Cache::open(Path::new(&args[1])).expect("open side cache");
            let producers: i64 = args[2].parse().expect("producers");
            let mut got = Vec::new();
            loop {
                match deque.popleft().expect("popleft") {
                    Some(item) => got.push(item),
                    None => {
                        let done: i64 = side.get("producers_done").expect("get").unwrap_or(0);
                        if done == producers && deque.is_empty().expect("is_empty") {
                            break;
                        }
                        std::thread::yield_now();
                    }
                }
            }
            // Each producer's items reach one consumer in the order they were appended.
            let mut last: std::collections::HashMap<u64, u64> = Default::default();
            let mut in_order = true;
            for (id, i) in &got {
                if let Some(prev) = last.insert(*id, *i) {
                    in_order &= *i > prev;
                }
            }
            println!("{} {}", got.len(), in_order);
            let mut out = std::io::stdout().lock();
            for (id, i) in &got {
                writeln!(out, "{id} {i}").expect("write");
            }
        }
        "lock_counter" => {
            let cache = Cache::open(dir).expect("open");
            let lock = Lock::new(cache.clone(), "counter-lock")
                .expect("lock")
                .expire(Duration::from_secs(120));
            let m: u64 = args[1].parse().expect("m");
            for _ in 0..m {
                lock.run(|| {
                    // A read-modify-write that loses updates unless the lock excludes
                    // the other processes.
                    let v: u64 = cache.get("counter").expect("get").unwrap_or(0);
                    cache.set("counter", v + 1).expect("set");
                })
                .expect("run under the lock");
            }
        }
        "fanout_incr" => {
            let cache = FanoutCache::builder()
                .retry(true)
                .open(dir)
                .expect("open fanout");
            let n: u64 = args[1].parse().expect("n");
            for i in 0..n {
                let v = cache.incr(("counter", i % 4), 1).expect("incr");
                assert!(v.is_some(), "with retry, incr never gives up");
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn incr_from_many_processes_loses_no_increment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    Cache::open(dir.path()).expect("create");
    let kids: Vec<Child> = (0..8).map(|_| spawn("incr", &[d, "500"])).collect();
    for k in kids {
        wait_ok(k);
    }
    let cache = Cache::open(dir.path()).expect("open");
    assert_eq!(
        cache.get::<i64>(&b"counter"[..]).expect("get"),
        Some(8 * 500)
    );
}

fn add_from_many_processes_succeeds_exactly_once_per_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    Cache::open(dir.path()).expect("create");
    let mut kids: Vec<Child> = (0..6).map(|i| spawn("add", &[d, &i.to_string()])).collect();
    let mut total = 0u64;
    for k in &mut kids {
        let out = Lines::of(k.stdout.take().expect("stdout"));
        total += out.next().parse::<u64>().expect("count");
    }
    for k in kids {
        wait_ok(k);
    }
    assert_eq!(
        total, 500,
        "each of the 500 keys was added by exactly one process"
    );
    let cache = Cache::open(dir.path()).expect("open");
    assert_eq!(cache.len().expect("len"), 500);
}

fn a_write_in_one_process_is_seen_by_an_open_handle_in_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    // The parent's handle is open before the child writes, and is not reopened.
    let cache = Cache::open(dir.path()).expect("open");
    let mut a = spawn("set_then_report", &[d, "from-child", "hello"]);
    let out = Lines::of(a.stdout.take().expect("stdout"));
    assert_eq!(out.next(), "done");
    assert_eq!(
        cache.get::<String>("from-child").expect("get").as_deref(),
        Some("hello")
    );
    wait_ok(a);

    // And the other way round: a child's open handle sees the parent's write.
    let mut b = spawn("read_on_request", &[d]);
    let mut input = b.stdin.take().expect("stdin");
    let out = Lines::of(b.stdout.take().expect("stdout"));
    assert_eq!(out.next(), "open");
    tell(&mut input, "from-parent");
    assert_eq!(out.next(), "<none>");
    cache.set("from-parent", "world").expect("set");
    tell(&mut input, "from-parent");
    assert_eq!(out.next(), "world");
    tell(&mut input, "");
    drop(input);
    wait_ok(b);
}

fn a_read_completes_while_another_process_holds_a_long_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    let cache = Cache::builder()
        .timeout(Duration::from_millis(50))
        .open(dir.path())
        .expect("open");
    cache.set("k", "old").expect("set");
    let mut a = spawn("hold_transaction", &[d]);
    let mut input = a.stdin.take().expect("stdin");
    let out = Lines::of(a.stdout.take().expect("stdout"));
    assert_eq!(out.next(), "holding");
    // The child holds the writer lock and will not let go until told: if a read waited
    // for it, this would never return.
    for _ in 0..100 {
        assert_eq!(
            cache.get::<String>("k").expect("get").as_deref(),
            Some("old")
        );
        assert!(!cache.contains("other").expect("contains"));
    }
    // A write cannot get in meanwhile.
    assert!(matches!(
        cache.set("k", "parent"),
        Err(Error::Timeout { .. })
    ));
    tell(&mut input, "commit");
    assert_eq!(out.next(), "committed");
    wait_ok(a);
    assert_eq!(
        cache.get::<String>("k").expect("get").as_deref(),
        Some("new")
    );
    assert!(cache.contains("other").expect("contains"));
}

fn readers_in_other_processes_never_see_half_a_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    let cache = Cache::builder()
        .min_file_size(1 << 20)
        .open(dir.path())
        .expect("open");
    let mut w = spawn("batches", &[d, "40"]);
    let out = Lines::of(w.stdout.take().expect("stdout"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(out.next());
    });
    let mut seen = 0;
    loop {
        let n = cache.len().expect("len");
        assert_eq!(n % 100, 0, "len {n} shows part of a transaction");
        if n > 0 {
            // Every key of every transaction counted so far is there.
            assert!(
                cache.contains(n - 1).expect("contains"),
                "last key of a committed batch missing"
            );
            assert!(
                cache.contains(n - 100).expect("contains"),
                "first key of a committed batch missing"
            );
        }
        seen = seen.max(n);
        if rx.try_recv().is_ok() {
            break;
        }
    }
    wait_ok(w);
    assert_eq!(cache.len().expect("len"), 4000);
    assert!(seen <= 4000);
}

fn a_writer_killed_while_writing_loses_no_commit_and_frees_the_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    let cache = Cache::builder()
        .sync(SyncLevel::Full)
        .timeout(Duration::from_secs(30))
        .open(dir.path())
        .expect("open");
    let mut most = 0;
    for round in 0..3 {
        let mut w = spawn("write_forever", &[d]);
        let out = Lines::of(w.stdout.take().expect("stdout"));
        let mut acked = 0u64;
        for _ in 0..(200 + round * 150) {
            acked = out.next().parse().expect("index");
        }
        most = most.max(acked);
        // SIGKILL, at whatever instant the writer has reached (often mid-commit).
        w.kill().expect("kill");
        let _ = w.wait();
        // Everything acknowledged is there, through the handle that stayed open...
        for i in (0..=acked).step_by(17).chain([acked]) {
            assert_eq!(
                cache.get::<u64>(i).expect("get"),
                Some(i),
                "acknowledged write {i} lost"
            );
        }
        // ...and the dead writer's lock does not block the next writer.
        cache
            .set("after-kill", round)
            .expect("writer lock taken over from the dead process");
    }
    drop(cache);
    // The directory reopens cleanly, with every acknowledged key (each round rewrote keys
    // from 0) and the three marker writes' key.
    let cache = Cache::open(dir.path()).expect("reopen");
    assert!(cache.len().expect("len") >= most + 2);
}

fn a_writer_waits_for_another_process_and_times_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    let cache = Cache::builder()
        .timeout(Duration::from_millis(100))
        .open(dir.path())
        .expect("open");
    let mut a = spawn("lock_and_wait", &[d]);
    let mut input = a.stdin.take().expect("stdin");
    let out = Lines::of(a.stdout.take().expect("stdout"));
    assert_eq!(out.next(), "locked");
    assert!(matches!(cache.set("x", 1), Err(Error::Timeout { .. })));
    assert!(matches!(cache.incr("n", 1), Err(Error::Timeout { .. })));
    tell(&mut input, "release");
    wait_ok(a);
    cache.set("x", 1).expect("free again");
}

fn a_deque_between_a_producer_and_a_consumer_process_loses_and_duplicates_nothing() {
    const N: u64 = 100_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let side = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    let s = side.path().to_str().expect("utf-8 path");
    let mut consumer = spawn("deque_consume", &[d, s, "1"]);
    let producer = spawn("deque_produce", &[d, "0", &N.to_string(), s]);
    let out = Lines::of(consumer.stdout.take().expect("stdout"));
    let summary = out.next();
    for expected in 0..N {
        let line = out.next();
        assert_eq!(
            line,
            format!("0 {expected}"),
            "items arrive once each, in order"
        );
    }
    assert_eq!(summary, format!("{N} true"));
    wait_ok(producer);
    wait_ok(consumer);
    let deque: Deque<(u64, u64)> = Deque::open(dir.path()).expect("open");
    assert_eq!(deque.len().expect("len"), 0);
}

fn a_deque_shared_by_two_producers_and_two_consumers_delivers_each_item_once() {
    const N: u64 = 20_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let side = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    let s = side.path().to_str().expect("utf-8 path");
    let mut consumers: Vec<Child> = (0..2)
        .map(|_| spawn("deque_consume", &[d, s, "2"]))
        .collect();
    let producers: Vec<Child> = (0..2)
        .map(|id| spawn("deque_produce", &[d, &id.to_string(), &N.to_string(), s]))
        .collect();
    let mut seen = std::collections::HashSet::new();
    for c in &mut consumers {
        let out = Lines::of(c.stdout.take().expect("stdout"));
        let summary = out.next();
        let (count, in_order) = summary.split_once(' ').expect("summary");
        assert_eq!(in_order, "true", "each producer's items keep their order");
        for _ in 0..count.parse::<u64>().expect("count") {
            let line = out.next();
            assert!(seen.insert(line.clone()), "{line} delivered twice");
        }
    }
    for p in producers {
        wait_ok(p);
    }
    for c in consumers {
        wait_ok(c);
    }
    assert_eq!(seen.len() as u64, 2 * N, "every item delivered");
}

fn a_counter_guarded_by_a_lock_in_many_processes_loses_no_update() {
    const PROCS: u64 = 4;
    const M: u64 = 250;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    Cache::open(dir.path()).expect("create");
    let kids: Vec<Child> = (0..PROCS)
        .map(|_| spawn("lock_counter", &[d, &M.to_string()]))
        .collect();
    for k in kids {
        wait_ok(k);
    }
    let cache = Cache::open(dir.path()).expect("open");
    assert_eq!(cache.get::<u64>("counter").expect("get"), Some(PROCS * M));
    assert!(
        !cache.contains("counter-lock").expect("contains"),
        "lock released"
    );
}

fn fanout_incr_from_many_processes_with_retry_loses_no_increment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    FanoutCache::open(dir.path()).expect("create");
    let kids: Vec<Child> = (0..4).map(|_| spawn("fanout_incr", &[d, "400"])).collect();
    for k in kids {
        wait_ok(k);
    }
    let cache = FanoutCache::open(dir.path()).expect("open");
    let total: i64 = (0..4u64)
        .map(|i| cache.get::<i64>(("counter", i)).expect("get").unwrap_or(0))
        .sum();
    assert_eq!(total, 4 * 400);
}
