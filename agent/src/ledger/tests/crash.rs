//! Crash consistency: a child process applies evaluations and pushes outbox events in a loop and
//! is SIGKILLed at random moments; after every kill the store must open, hold everything the
//! child reported as committed, and show each transaction whole.
//!
//! The child is this test binary again, running [`crash_writer`] with [`WRITER_ENV`] set. It
//! prints `applied N`, `pushed N` or `acked N` (flushed) after each commit returns.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use super::{event, fail, finding};
use crate::finding::{Finding, Status};
use crate::ledger::{Ledger, OutboxLimits};
use crate::report::cloudevents::types;

/// Selects writer mode in the child: the state directory to write to.
const WRITER_ENV: &str = "NODEDRIFT_LEDGER_CRASH_WRITER";
/// The child's first sequence number.
const START_ENV: &str = "NODEDRIFT_LEDGER_CRASH_START";
/// How many times the child is killed.
const KILLS: usize = 25;
/// Large enough that the overflow policy never drops anything in this test.
const LIMITS: OutboxLimits = OutboxLimits {
    max_events: 1_000_000,
};
/// Hang guard for one child run (it is killed long before in a normal run).
const CHILD_HANG_GUARD: Duration = Duration::from_secs(120);

/// The evaluation of step `i`: `tick` always fails (its actual value is `i`), `flip` fails on
/// even steps and passes on odd ones, `w0..w3` follow slower patterns.
fn scan(i: u64) -> Vec<Finding> {
    let mut tick = fail("tick", "os");
    tick.actual = json!(i);
    let flip = finding(
        "flip",
        "os",
        "os.flip",
        if i % 2 == 0 {
            Status::Fail
        } else {
            Status::Pass
        },
    );
    let mut out = vec![tick, flip];
    for j in 0..4u64 {
        if (i / (j + 2)) % 2 == 0 {
            out.push(fail(&format!("w{j}"), "sysctl"));
        }
    }
    out
}

/// Writer mode (a no-op unless [`WRITER_ENV`] is set): loops until killed.
#[test]
fn crash_writer() {
    let Ok(dir) = std::env::var(WRITER_ENV) else {
        return;
    };
    let start: u64 = std::env::var(START_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let l = Ledger::open_with(Path::new(&dir), LIMITS).expect("child opens the ledger");
    let mut out = std::io::stdout().lock();
    let mut report = |line: String| {
        writeln!(out, "{line}").expect("stdout");
        out.flush().expect("stdout");
    };
    for i in start.. {
        let now = i as i64;
        l.apply(&scan(i), None, now).expect("apply");
        report(format!("applied {i}"));
        l.outbox_push(
            &[
                event(&format!("e{i}"), types::FINDING_OPENED),
                event(&format!("h{i}"), types::NODE_SUMMARY),
            ],
            now,
        )
        .expect("push");
        report(format!("pushed {i}"));
        if i % 3 == 0 {
            l.outbox_ack(&[format!("e{}", i - 1)]).expect("ack");
            report(format!("acked {}", i - 1));
        }
        let state = crate::ledger::RebootState {
            pending: i % 10 < 5,
            since: Some(now),
            ..crate::ledger::RebootState::default()
        };
        l.set_reboot_pending(&state, now).expect("reboot");
    }
}

#[test]
fn sigkilled_writer_loses_no_committed_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let exe = std::env::current_exe().unwrap();
    let mut applied = BTreeSet::new();
    let mut pushed = BTreeSet::new();
    let mut acked = BTreeSet::new();
    // Acks that may have committed without being reported (the child died before printing).
    let mut maybe_acked = BTreeSet::new();
    let mut start = 1u64;
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for kill in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([
                "ledger::tests::crash::crash_writer",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WRITER_ENV, &dir)
            .env(START_ENV, start.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        let mut stderr = child.stderr.take().unwrap();
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        // Kill at a random moment: sometimes while the child still opens (or recovers) the
        // store, mostly in the middle of its commits.
        std::thread::sleep(Duration::from_millis(rng.u64(5..400)));
        let status = match child.try_wait().unwrap() {
            Some(s) => s,
            None => {
                child.kill().unwrap();
                wait_with_guard(&mut child)
            }
        };
        let lines = reader.join().unwrap();
        let stderr = err_reader.join().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "run {kill}: the writer stopped by itself ({status}):\n{stderr}"
        );
        let mut last_line = None;
        for l in &lines {
            // The first report shares its line with libtest's "test ... " prefix.
            let mut words = l.split_whitespace().rev();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            last_line = Some((what.to_owned(), n));
            match what {
                "applied" => applied.insert(n),
                "pushed" => pushed.insert(n),
                "acked" => acked.insert(n),
                _ => false,
            };
        }
        if let Some(("pushed", i)) = last_line.as_ref().map(|(w, i)| (w.as_str(), *i))
            && i % 3 == 0
        {
            maybe_acked.insert(i - 1);
        }

        let l = Ledger::open_with(&dir, LIMITS)
            .unwrap_or_else(|e| panic!("run {kill}: the store must open after SIGKILL: {e}"));
        let open = l.open_findings().unwrap();
        let last = if let Some(&a) = applied.last() {
            let tick = open
                .iter()
                .find(|o| o.key.rule == "tick")
                .unwrap_or_else(|| panic!("run {kill}: tick is open"));
            let j = tick.finding.actual.as_u64().unwrap();
            assert!(
                j >= a,
                "run {kill}: apply {a} was committed, the store has {j}"
            );
            assert_eq!(tick.generation, 1, "tick never resolved");
            assert!(tick.occurrences >= applied.len() as u64);
            // One apply is one transaction: flip and the w rules match the same step.
            let open_rules: BTreeSet<String> = open.iter().map(|o| o.key.rule.clone()).collect();
            let expected: BTreeSet<String> = scan(j)
                .into_iter()
                .filter(|f| f.status == Status::Fail)
                .map(|f| f.rule)
                .collect();
            assert_eq!(
                open_rules, expected,
                "run {kill}: open findings of step {j}"
            );
            j
        } else {
            start - 1
        };
        let queued: BTreeSet<String> = l
            .outbox_peek(usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        for i in &pushed {
            assert!(queued.contains(&format!("h{i}")), "run {kill}: h{i} lost");
            if !acked.contains(i) && !maybe_acked.contains(i) {
                assert!(queued.contains(&format!("e{i}")), "run {kill}: e{i} lost");
            }
        }
        for i in &acked {
            assert!(
                !queued.contains(&format!("e{i}")),
                "run {kill}: e{i} was acked"
            );
        }
        // One push is one transaction: an event and its heartbeat are queued together.
        for id in &queued {
            if let Some(i) = id.strip_prefix('e') {
                assert!(
                    queued.contains(&format!("h{i}")),
                    "run {kill}: e{i} without h{i}"
                );
            }
        }
        drop(l);
        start = last + 1;
    }
    assert!(
        applied.len() >= KILLS,
        "the writer committed too little to prove anything: {} applies",
        applied.len()
    );
    eprintln!(
        "{KILLS} kills; {} applies, {} pushes, {} acks reported committed",
        applied.len(),
        pushed.len(),
        acked.len()
    );
}

/// Waits for a killed child, failing the test if it never exits.
fn wait_with_guard(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + CHILD_HANG_GUARD;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the killed writer never exited"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
