//! Handles inherited across a real `fork()` (gunicorn's pre-fork workers, `multiprocessing`
//! with the fork start method): a child neither releases nor keeps the parent's locks, can
//! go on using the handle as a process of its own, and cannot touch a transaction the parent
//! had open. A harness-less test binary: forking a process that runs test threads is not
//! safe, so the cases run one after another on the main thread.

use diskcache::{Cache, Error};
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Forks; the child runs `child` and exits with its status (0: passed) without unwinding
/// into the parent's code or running its destructors.
fn fork_child(child: impl FnOnce() -> i32) -> libc::pid_t {
    // Safety (test code): the process runs no other threads at this point, except where a
    // case says so; the child only runs `child` and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(101);
        // Safety: ends the child at once, as a forked child should.
        unsafe { libc::_exit(code) }
    }
    pid
}

/// Waits for a child; returns its exit status (or 128 + the signal that killed it).
fn wait(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // Safety: `status` is a valid out-pointer for the call.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

fn kill(pid: libc::pid_t) {
    // Safety: sends a signal to a child of this process.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// A pipe: (read end, write end).
fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0; 2];
    // Safety: `fds` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // Safety: both descriptors were just created and are owned by nothing else.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

fn open(dir: &Path) -> Cache {
    Cache::builder()
        .timeout(Duration::from_secs(30))
        .open(dir)
        .expect("open")
}

/// The issue this pins: a child dropped its copy of the parent's handle, which released the
/// parent's liveness lock; another handle then took the writer lock over in the middle of
/// the parent's transaction, and one of the two increments was lost.
fn a_child_dropping_an_inherited_handle_leaves_the_parents_writer_lock_alone(dir: &Path) {
    let cache = open(dir);
    cache.set("n", 100i64).expect("set");
    // Safety (test code): no other thread runs; the child only drops its copy of the
    // handle (the last reference to it in the child) and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        drop(cache);
        // Safety: ends the child at once.
        unsafe { libc::_exit(0) }
    }
    assert_eq!(wait(pid), 0);
    // The child is gone, and so is its copy. Now a second handle competes with the parent.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let d = dir.to_path_buf();
    let other = std::thread::spawn(move || {
        let c = open(&d);
        go_rx.recv().expect("go");
        c.incr("n", 1).expect("incr in the other handle");
    });
    cache
        .transact(|| {
            let n: i64 = cache.get("n")?.expect("n");
            go_tx.send(()).expect("go");
            // The other handle must wait for this transaction, not take the lock over.
            std::thread::sleep(Duration::from_millis(300));
            cache.set("n", n + 1)
        })
        .expect("transaction");
    other.join().expect("other handle");
    assert_eq!(
        cache.get::<i64>("n").expect("get"),
        Some(102),
        "an increment was lost"
    );
}

fn a_child_keeps_using_an_inherited_handle_as_a_process_of_its_own(dir: &Path) {
    let cache = open(dir);
    cache.set("parent", "before the fork").expect("set");
    let pid = fork_child(|| {
        let ok = cache.get::<String>("parent").ok().flatten().as_deref() == Some("before the fork")
            && cache.set("child", "from the child").is_ok()
            && cache.incr("count", 5).is_ok()
            && cache.transact(|| cache.incr("count", 1)).is_ok();
        if ok {
            0
        } else {
            1
        }
    });
    assert_eq!(wait(pid), 0, "the child could not use the inherited handle");
    assert_eq!(
        cache.get::<String>("child").expect("get").as_deref(),
        Some("from the child")
    );
    assert_eq!(cache.get::<i64>("count").expect("get"), Some(6));
    cache
        .set("parent", "after the fork")
        .expect("the parent still writes");
    assert!(cache.check(false).expect("check").is_empty());
}

fn a_transaction_open_at_the_fork_stays_the_parents(dir: &Path) {
    let cache = open(dir);
    let r = cache.transact(|| {
        cache.set("in parent txn", 1)?;
        let pid = fork_child(|| match cache.set("from child", 1) {
            Err(Error::Forked) => 0,
            _ => 1,
        });
        assert_eq!(
            wait(pid),
            0,
            "a write in the child joined the parent's transaction"
        );
        cache.set("in parent txn 2", 2)
    });
    r.expect("the parent's transaction commits");
    assert_eq!(cache.get::<i64>("in parent txn 2").expect("get"), Some(2));
    assert_eq!(cache.get::<i64>("from child").expect("get"), None);
}

/// A parent that dies holding the writer lock while its child lives on: the child must not
/// keep the parent's liveness lock alive (it closes inherited lock descriptors), or every
/// other writer would wait for the child to exit.
fn a_dead_parents_writer_lock_is_taken_over_while_its_child_lives(dir: &Path) {
    let (mut locked_r, mut locked_w) = pipe();
    let (grandchild_r, mut grandchild_w) = pipe();
    let parent = fork_child(move || {
        let cache = open(dir);
        let g = fork_child(|| {
            std::thread::sleep(Duration::from_secs(60));
            0
        });
        let _ = grandchild_w.write_all(&g.to_le_bytes());
        let _ = cache.transact(|| {
            let _ = locked_w.write_all(b"L");
            std::thread::sleep(Duration::from_secs(60));
            cache.set("never", 1)
        });
        1
    });
    let mut b = [0u8; 1];
    locked_r
        .read_exact(&mut b)
        .expect("the parent holds the writer lock");
    let mut g = [0u8; 4];
    let mut grandchild_r = grandchild_r;
    grandchild_r.read_exact(&mut g).expect("grandchild pid");
    let grandchild = libc::pid_t::from_le_bytes(g);
    kill(parent);
    assert_eq!(wait(parent), 128 + libc::SIGKILL);
    let start = Instant::now();
    let cache = Cache::builder()
        .timeout(Duration::from_secs(10))
        .open(dir)
        .expect("open");
    cache
        .set("after", 1)
        .expect("the dead parent's writer lock is taken over");
    let waited = start.elapsed();
    kill(grandchild);
    assert!(
        waited < Duration::from_secs(5),
        "waited {waited:?} for a writer lock whose holder is dead"
    );
    assert_eq!(cache.get::<i64>("never").expect("get"), None);
}

/// Nothing a cleaner could remove hands the writer lock to another handle while its holder
/// lives: liveness is a lock held by the holder, not a file. Even the meta file's removal
/// leaves open handles excluded (they share its mapping), and new opens refuse to start
/// afresh beside the log.
fn removing_files_never_lets_a_second_writer_in(dir: &Path) {
    let waiting = open(dir);
    waiting.set("start", 1).expect("set");
    let (mut locked_r, mut locked_w) = pipe();
    let (mut go_r, mut go_w) = pipe();
    let holder = fork_child(move || {
        let cache = open(dir);
        let r = cache.transact(|| {
            let _ = locked_w.write_all(b"L");
            let mut b = [0u8; 1];
            let _ = go_r.read_exact(&mut b);
            cache.set("holder", 1)
        });
        i32::from(r.is_err())
    });
    let mut b = [0u8; 1];
    locked_r
        .read_exact(&mut b)
        .expect("the holder holds the writer lock");
    for entry in std::fs::read_dir(dir).expect("list") {
        let p = entry.expect("entry").path();
        if p.is_file() {
            std::fs::remove_file(&p).expect("remove");
        }
    }
    let short = Cache::builder().timeout(Duration::from_millis(300));
    assert!(
        matches!(short.clone().open(dir), Err(Error::Corrupted { .. })),
        "a new handle started a fresh cache beside the old log"
    );
    let waited = waiting.incr("n", 1);
    assert!(
        matches!(waited, Err(Error::Timeout { .. })),
        "an open handle wrote while another process held the writer lock: {waited:?}"
    );
    go_w.write_all(b"G").expect("go");
    assert_eq!(wait(holder), 0);
    assert_eq!(waiting.get::<i64>("holder").expect("get"), Some(1));
    waiting
        .incr("n", 1)
        .expect("writes go on once the holder is done");
}

/// Several children increment through the handle they all inherited.
fn forked_children_incrementing_through_an_inherited_handle_lose_nothing(dir: &Path) {
    let cache = open(dir);
    cache.set("n", 0i64).expect("set");
    let children: Vec<_> = (0..4)
        .map(|_| {
            fork_child(|| {
                for _ in 0..200 {
                    if cache.incr("n", 1).is_err() {
                        return 1;
                    }
                }
                0
            })
        })
        .collect();
    for _ in 0..100 {
        cache.incr("n", 1).expect("incr in the parent");
    }
    for pid in children {
        assert_eq!(wait(pid), 0);
    }
    assert_eq!(cache.get::<i64>("n").expect("get"), Some(900));
}

/// A named case.
type Case = (&'static str, fn(&Path));

fn main() {
    let cases: [Case; 6] = [
        (
            "a_child_dropping_an_inherited_handle_leaves_the_parents_writer_lock_alone",
            a_child_dropping_an_inherited_handle_leaves_the_parents_writer_lock_alone,
        ),
        (
            "a_child_keeps_using_an_inherited_handle_as_a_process_of_its_own",
            a_child_keeps_using_an_inherited_handle_as_a_process_of_its_own,
        ),
        (
            "a_transaction_open_at_the_fork_stays_the_parents",
            a_transaction_open_at_the_fork_stays_the_parents,
        ),
        (
            "a_dead_parents_writer_lock_is_taken_over_while_its_child_lives",
            a_dead_parents_writer_lock_is_taken_over_while_its_child_lives,
        ),
        (
            "removing_files_never_lets_a_second_writer_in",
            removing_files_never_lets_a_second_writer_in,
        ),
        (
            "forked_children_incrementing_through_an_inherited_handle_lose_nothing",
            forked_children_incrementing_through_an_inherited_handle_lose_nothing,
        ),
    ];
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for (name, case) in cases {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        print!("test {name} ... ");
        let _ = std::io::stdout().flush();
        case(dir.path());
        println!("ok");
    }
}
