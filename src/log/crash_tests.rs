//! Crash tests of the log writer over the simulated disk (`sim_fs.rs`): a
//! power cut at every write and fsync, with unsynced bytes dropped, kept or
//! torn at every byte, must reopen at exactly the last acknowledged LSN; a
//! failed fsync or a full disk poisons the writer; a roll fsyncs the
//! directory (issue 9).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::error::LogError;
use super::frame::{FRAME_HEADER_LEN, FRAME_OVERHEAD};
use super::fs::LogFs;
use super::reader::{LogReader, SegmentEnd, decode_frame, scan_segment};
use super::segment::{FOOTER_MAGIC, SEGMENT_HEADER_LEN, parse_segment_name};
use super::sim_fs::{Bytes, Entries, Op, SimFs, Tail};
use super::writer::{LogWriter, WriterOptions};
use crate::event::{Candle, Decimal, Event, Interval, Lsn, Outcome, OutcomeStatus, Run, RunKind, Symbol};

fn dir() -> PathBuf {
    PathBuf::from("/sim/data/log")
}

/// Small segments, so that the workload rolls and seals several times.
fn opts() -> WriterOptions {
    WriterOptions { max_segment_bytes: 800, zstd_level: 3 }
}

fn candle(i: u64) -> Event {
    let d = |m: u64, s: u8| Decimal::from_parts(false, u128::from(m), s).unwrap();
    let open_time = 1_704_067_200_000 + i as i64 * 14_400_000;
    let base = 31_000 + (i * 7919) % 3000;
    Event::Candle(Candle {
        symbol: Symbol::parse(["BTCUSDT", "ETHUSDT", "SKRUSDT"][(i % 3) as usize]).unwrap(),
        interval: Interval::H4,
        open_time,
        close_time: open_time + 14_399_999,
        open: d(base, 2),
        high: d(base + 90, 2),
        low: d(base - 40, 2),
        close: d(base + i % 13, 2),
        volume: d(1000 + i * 31, 3),
        quote_volume: d(31_000_000 + i * 977, 2),
        trades: 100 + i % 57,
        taker_buy_volume: d(500 + i, 3),
        taker_buy_quote_volume: d(15_000_000 + i * 13, 2),
    })
}

fn run_record(i: u64) -> Event {
    Event::Run(Run {
        kind: RunKind::Sync,
        id: format!("sync-{i}"),
        started_ms: 1_769_097_600_000 + i as i64,
        ended_ms: 1_769_097_606_000 + i as i64,
        outcomes: vec![Outcome {
            unit: "BTCUSDT".into(),
            interval: Some(Interval::H4),
            status: OutcomeStatus::Ok,
            appended: i,
            revisions: 0,
            message: String::new(),
        }],
    })
}

/// Appends of varied sizes (1 to 40 events, a run record now and then).
fn workload() -> Vec<Vec<Event>> {
    let sizes = [1u64, 6, 2, 23, 1, 40, 3, 11, 1, 17, 2, 31, 5, 1, 9];
    let mut next = 0;
    let mut batches = Vec::new();
    for (b, &n) in sizes.iter().enumerate() {
        let mut batch: Vec<Event> = (next..next + n).map(candle).collect();
        next += n;
        if b % 4 == 3 {
            batch.push(run_record(b as u64));
        }
        batches.push(batch);
    }
    batches
}

/// What the workload got back before the power went off.
struct Progress {
    /// End of the last append that returned Ok.
    acked: Lsn,
    /// End of the append that failed, if one did.
    inflight: Option<Lsn>,
    error: Option<LogError>,
}

fn run_workload(fs: &SimFs, batches: &[Vec<Event>]) -> (Progress, Option<LogWriter>) {
    let mut out = Progress { acked: 0, inflight: None, error: None };
    let mut w = match LogWriter::open_with(Arc::new(fs.clone()), &dir(), opts()) {
        Ok((w, _)) => w,
        Err(e) => {
            out.error = Some(e);
            return (out, None);
        }
    };
    for batch in batches {
        match w.append(batch) {
            Ok(_) => {
                assert_eq!(w.head_lsn(), out.acked + batch.len() as u64);
                out.acked = w.head_lsn();
            }
            Err(e) => {
                out.inflight = Some(out.acked + batch.len() as u64);
                out.error = Some(e);
                break;
            }
        }
    }
    (out, Some(w))
}

/// Decoded events per frame hash: frames with the same hash hold the same bytes.
type Decoded = HashMap<[u8; 32], Vec<Event>>;

/// Every event of the log on `fs`, checked as a reader would after the
/// writer opened it: each segment scanned with every hash and the chain from
/// the genesis hash, every one but the last sealed, no torn tail left.
fn read_log(fs: &SimFs, cache: &mut Decoded) -> Result<(Vec<Event>, [u8; 32]), String> {
    let mut segments: Vec<(u64, PathBuf)> =
        fs.list(&dir()).unwrap().iter().filter_map(|n| parse_segment_name(n).map(|s| (s, dir().join(n)))).collect();
    segments.sort();
    let mut dec = zstd::bulk::Decompressor::new().unwrap();
    let mut events = Vec::new();
    let mut expect = None;
    let mut head = [0u8; 32];
    for (i, (seq, path)) in segments.iter().enumerate() {
        let data = fs.read(path).unwrap();
        let is_last = i + 1 == segments.len();
        let scan = scan_segment(path, *seq, &data, is_last, expect);
        if !scan.damage.is_empty() {
            return Err(format!("damage after reopen: {:?}", scan.damage));
        }
        match (&scan.end, is_last) {
            (SegmentEnd::Sealed(_), _) | (SegmentEnd::Open, true) => {}
            (end, _) => return Err(format!("{} ends {end:?} after reopen", path.display())),
        }
        for meta in &scan.frames {
            let evs = match cache.get(&meta.hash) {
                Some(e) => e.clone(),
                None => {
                    let frame = &data[meta.offset as usize..];
                    let e = decode_frame(frame, meta, &mut dec).map_err(|e| format!("frame at {}: {e}", meta.offset))?;
                    cache.insert(meta.hash, e.clone());
                    e
                }
            };
            events.extend(evs);
        }
        expect = Some(super::ChainPos::new(scan.next_lsn - 1, scan.head_hash));
        head = scan.head_hash;
    }
    Ok((events, head))
}

/// Which heads a reopen may land on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Exactly the last acknowledged LSN: some byte of the in-flight append was lost.
    Acked,
    /// The acknowledged LSN, or the in-flight append's end if all of it survived.
    AckedOrInflight,
}

/// Opens the writer over a crashed disk and checks where it lands; returns the head.
fn check_reopen(img: &SimFs, out: &Progress, expect: Expect, all: &[Event], cache: &mut Decoded) -> Result<Lsn, String> {
    let (w, _) = LogWriter::open_with(Arc::new(img.clone()), &dir(), opts()).map_err(|e| format!("the log does not open: {e}"))?;
    let head = w.head_lsn();
    let allowed = head == out.acked || (expect == Expect::AckedOrInflight && Some(head) == out.inflight);
    if !allowed {
        return Err(format!("reopened at LSN {head}; acknowledged {}, in flight up to {:?}, expected {expect:?}", out.acked, out.inflight));
    }
    let (events, hash) = read_log(img, cache)?;
    if events.len() as u64 != head || events[..] != all[..events.len()] {
        return Err(format!("the log holds {} events that differ from the {head} appended", events.len()));
    }
    if hash != w.head_hash() {
        return Err("the writer's head hash is not the chain's".into());
    }
    Ok(head)
}

/// Where a zero-filled tear of `tail` after `keep` bytes is refused as
/// damage, as an offset in the file: `None` when the format calls it a torn
/// tail. This is a gap in format/segment.md ("Torn tail"), not in the
/// writer: a power cut can leave a frame or footer whose size reached the
/// disk but whose last sector did not, and the rules accept such zeros only
/// where a whole checksum is zero. A tear inside a frame's 4-byte
/// `header_check` or 32-byte hash (its kept bytes not all zero), or inside a
/// footer once its 7 bytes of magic and the zero after them are in place,
/// is reported as damage: the writer refuses to open (fail-safe: it
/// modifies nothing and never opens at a wrong LSN) until `candlelog
/// recover` cuts the tail (it keeps the valid prefix and quarantines the
/// file). Nothing acknowledged is lost, but the service stops. When the
/// format learns these tears (kept bytes = a prefix of what the scan can
/// recompute, the rest zeros), this predicate and its test must go.
fn refused_zero_tear(tail: &Tail, keep: usize) -> Option<u64> {
    // Only frames and footers: a new segment's header is written under a temporary name.
    let name = tail.path.file_name()?.to_str()?;
    if parse_segment_name(name).is_none() || tail.offset < SEGMENT_HEADER_LEN as u64 {
        return None;
    }
    let bytes = &tail.bytes;
    let kept_nonzero = |from: usize, to: usize| bytes.get(from..keep.min(to)).is_some_and(|b| b.iter().any(|&x| x != 0));
    let mut torn = bytes[..keep].to_vec();
    torn.resize(bytes.len(), 0);
    // A structure whose lost bytes were zeros anyway is whole (a hash may end in 0).
    if torn.starts_with(&FOOTER_MAGIC) {
        return (torn != *bytes).then_some(tail.offset);
    }
    let mut pos = 0;
    while let Some(h) = bytes.get(pos..pos + FRAME_HEADER_LEN) {
        let end = pos + FRAME_OVERHEAD + u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if torn.get(..end) != bytes.get(..end) {
            let (check, hash) = (pos + FRAME_HEADER_LEN - 4, end - 32);
            let header_torn = torn.get(pos..check + 4) != bytes.get(pos..check + 4);
            let in_check = header_torn && keep > check && kept_nonzero(check, check + 4);
            let in_hash = keep > hash && kept_nonzero(hash, end);
            return (in_check || in_hash).then_some(tail.offset + pos as u64);
        }
        pos = end;
    }
    None
}

/// Counts of what a sweep saw.
#[derive(Debug, Default)]
struct Sweep {
    images: usize,
    refused: usize,
    inflight_kept: usize,
    failures: Vec<String>,
}

/// Cuts the power after every operation of the workload (0 = before the
/// first) and checks every crash image of each cut.
fn sweep(setup: impl Fn(&SimFs)) -> Sweep {
    let batches = workload();
    let all: Vec<Event> = batches.concat();
    let dry = SimFs::new();
    setup(&dry);
    let (out, _) = run_workload(&dry, &batches);
    assert!(out.error.is_none(), "{:?}", out.error);
    let total = dry.ops();
    let mut seen = Sweep::default();
    for n in 0..=total {
        let fs = SimFs::new();
        setup(&fs);
        fs.power_cut_after(n);
        let (out, _) = run_workload(&fs, &batches);
        assert_eq!(out.error.is_some(), n < total, "power cut after op {n}: {:?}", out.error);
        let last_op = fs.trace().last().cloned();
        let tail = fs.unsynced_tail();
        let tail_len = tail.as_ref().map_or(0, |t| t.bytes.len());
        let mut cache = Decoded::new();
        for entries in (0..=fs.unsynced_entries()).map(Entries::First) {
            let mut variants = vec![(Bytes::Drop, Expect::Acked), (Bytes::Keep, Expect::AckedOrInflight)];
            for keep in 0..=tail_len {
                // Whole when nothing was lost, or only bytes that were zeros anyway.
                let whole =
                    |zero_rest| keep == tail_len || (zero_rest && tail.as_ref().is_some_and(|t| t.bytes[keep..].iter().all(|&b| b == 0)));
                for zero_rest in [false, true] {
                    let expect = if whole(zero_rest) { Expect::AckedOrInflight } else { Expect::Acked };
                    variants.push((Bytes::Torn { keep, zero_rest }, expect));
                }
            }
            for (bytes, expect) in variants {
                seen.images += 1;
                let img = fs.crash(bytes, entries);
                let refused = match (bytes, &tail) {
                    (Bytes::Torn { keep, zero_rest: true }, Some(t)) => refused_zero_tear(t, keep).map(|off| (t.path.clone(), off)),
                    _ => None,
                };
                let what = format!("power cut after op {n} ({last_op:?}), {bytes:?}, entries {entries:?}");
                seen.refused += usize::from(refused.is_some());
                let result = match refused {
                    Some((path, offset)) => check_refused(&img, &path, offset),
                    None => check_reopen(&img, &out, expect, &all, &mut cache).map(|head| {
                        seen.inflight_kept += usize::from(head != out.acked);
                    }),
                };
                if let Err(e) = result {
                    seen.failures.push(format!("{what}: {e}"));
                }
            }
        }
    }
    seen
}

/// The writer refuses to open with damage at `path`/`offset` and modifies nothing.
fn check_refused(img: &SimFs, path: &std::path::Path, offset: u64) -> Result<(), String> {
    let before = img.files(&dir());
    match LogWriter::open_with(Arc::new(img.clone()), &dir(), opts()) {
        Ok((w, _)) => Err(format!("opened at LSN {} though the format calls this tear damage (refused_zero_tear is stale?)", w.head_lsn())),
        Err(LogError::Corrupt { path: p, offset: o, .. }) if p == path && o == offset => {
            if img.files(&dir()) != before {
                Err("a refused open modified the log".into())
            } else {
                Ok(())
            }
        }
        Err(e) => Err(format!("refused with an unexpected error (wanted damage at {} offset {offset}): {e}", path.display())),
    }
}

#[test]
fn every_crash_point_reopens_at_the_last_acknowledged_lsn() {
    let dry = SimFs::new();
    run_workload(&dry, &workload());
    let segments = dry.files(&dir()).keys().filter(|n| parse_segment_name(n).is_some()).count();
    assert!(segments >= 5, "the workload must roll several times, made {segments} segments");

    let seen = sweep(|_| {});
    assert!(seen.failures.is_empty(), "{} of {} crash images fail:\n{}", seen.failures.len(), seen.images, seen.failures.join("\n"));
    // The sweep reached both outcomes of an in-flight append, and the format gap.
    assert!(seen.images > 10_000 && seen.inflight_kept > 0 && seen.refused > 0, "{seen:?}");
}

#[test]
fn without_the_directory_fsync_a_power_cut_loses_acknowledged_appends() {
    // The same sweep over a disk that ignores directory fsyncs: a segment's
    // name is lost with the power, and with it appends that were acknowledged.
    let seen = sweep(SimFs::ignore_dir_sync);
    assert!(seen.failures.iter().any(|f| f.contains("reopened at LSN")), "{} failures: {:?}", seen.failures.len(), seen.failures.first());
}

#[test]
fn a_roll_fsyncs_the_directory_before_the_new_segment_holds_a_committed_frame() {
    let batches = workload();
    let dry = SimFs::new();
    run_workload(&dry, &batches);
    let trace = dry.trace();
    // Every segment gets its name by a rename that a directory fsync makes
    // durable before the first frame is written to it.
    let renames: Vec<usize> = (0..trace.len()).filter(|&i| matches!(&trace[i], Op::Rename { .. })).collect();
    assert!(renames.len() >= 5, "{trace:#?}");
    for &i in &renames {
        let Op::Rename { to, .. } = &trace[i] else { unreachable!() };
        let next_write = (i..trace.len()).find(|&j| matches!(&trace[j], Op::Write { path, .. } if path == to));
        let sync = (i..next_write.unwrap_or(trace.len())).find(|&j| matches!(&trace[j], Op::SyncDir(_)));
        assert!(sync.is_some(), "no directory fsync between creating {} and writing to it", to.display());
    }

    // A power cut right after the first acknowledged append in a new segment
    // finds the segment and the append.
    let Op::Rename { to: second, .. } = &trace[renames[1]] else { unreachable!() };
    let first_sync = (renames[1]..trace.len()).find(|&j| matches!(&trace[j], Op::SyncData(p) if p == second)).unwrap();
    for ignore in [false, true] {
        let fs = SimFs::new();
        if ignore {
            fs.ignore_dir_sync();
        }
        fs.power_cut_after(first_sync + 1);
        let (out, _) = run_workload(&fs, &batches);
        let img = fs.crash(Bytes::Drop, Entries::Drop);
        let (w, _) = LogWriter::open_with(Arc::new(img.clone()), &dir(), opts()).unwrap();
        let names: Vec<String> = img.files(&dir()).into_keys().collect();
        if ignore {
            // What a writer without the directory fsync would get: the
            // segment and an acknowledged append are gone.
            assert!(!names.iter().any(|n| second.ends_with(n)), "{names:?}");
            assert!(w.head_lsn() < out.acked, "{} {}", w.head_lsn(), out.acked);
        } else {
            assert!(names.iter().any(|n| second.ends_with(n)), "{names:?}");
            assert_eq!(w.head_lsn(), out.acked);
        }
    }
}

#[test]
fn a_zero_filled_tear_inside_a_hash_or_footer_is_refused_as_damage() {
    // The format gap of `refused_zero_tear`, on its own: the last frame's
    // hash keeps its first byte, the rest of the frame is zeros.
    let batches = workload();
    let fs = SimFs::new();
    let (mut w, _) = LogWriter::open_with(Arc::new(fs.clone()), &dir(), opts()).unwrap();
    w.append(&batches[0]).unwrap();
    let ops = fs.ops();
    fs.power_cut_after(ops + 1); // the next frame is written, never synced
    assert!(w.append(&batches[1]).is_err());
    let tail = fs.unsynced_tail().unwrap();
    // Keep the hash up to its first non-zero byte (a hash byte is 0 one time in 256).
    let hash_start = tail.bytes.len() - 32;
    let keep = hash_start + 1 + tail.bytes[hash_start..].iter().position(|&b| b != 0).unwrap();
    let img = fs.crash(Bytes::Torn { keep, zero_rest: true }, Entries::Keep);
    assert_eq!(refused_zero_tear(&tail, keep), Some(tail.offset));
    check_refused(&img, &tail.path, tail.offset).unwrap();
    // One byte less (the kept hash bytes all zeros) is a torn tail the writer truncates.
    let img = fs.crash(Bytes::Torn { keep: keep - 1, zero_rest: true }, Entries::Keep);
    let (w, truncations) = LogWriter::open_with(Arc::new(img), &dir(), opts()).unwrap();
    assert_eq!((w.head_lsn(), truncations.len()), (batches[0].len() as u64, 1));
}

#[test]
fn a_power_cut_during_recovery_reopens_at_the_same_lsn() {
    // Images whose open has work to do (a torn tail to cut, a temporary
    // segment to remove): cut the power at each operation of that open.
    let batches = workload();
    let all: Vec<Event> = batches.concat();
    let total = {
        let dry = SimFs::new();
        run_workload(&dry, &batches);
        dry.ops()
    };
    let mut recoveries = 0;
    for n in 0..total {
        let fs = SimFs::new();
        fs.power_cut_after(n);
        let (out, _) = run_workload(&fs, &batches);
        let Some(tail) = fs.unsynced_tail() else { continue };
        let mut cache = Decoded::new();
        let img = fs.crash(Bytes::Torn { keep: tail.bytes.len() / 2, zero_rest: false }, Entries::Keep);
        let dry = img.crash(Bytes::Keep, Entries::Keep);
        LogWriter::open_with(Arc::new(dry.clone()), &dir(), opts()).unwrap();
        for m in 0..dry.ops() {
            recoveries += 1;
            let again = img.crash(Bytes::Keep, Entries::Keep);
            again.power_cut_after(m);
            assert!(LogWriter::open_with(Arc::new(again.clone()), &dir(), opts()).is_err(), "op {n}, recovery op {m}");
            for bytes in [Bytes::Drop, Bytes::Keep] {
                for entries in [Entries::Drop, Entries::Keep] {
                    let img2 = again.crash(bytes, entries);
                    check_reopen(&img2, &out, Expect::Acked, &all, &mut cache)
                        .unwrap_or_else(|e| panic!("power cut after op {n}, then after recovery op {m}, {bytes:?}, {entries:?}: {e}"));
                }
            }
        }
    }
    assert!(recoveries > 20, "{recoveries}");
}

/// After a failed append: the error is `Io` from `op`, the writer is
/// poisoned with a clear message, nothing more reaches the disk.
fn assert_poisoned(fs: &SimFs, w: &mut LogWriter, out: &Progress, op: &str, errno: i32) {
    let err = out.error.as_ref().expect("the append must fail");
    assert!(
        matches!(err, LogError::Io { op: o, source, .. } if *o == op && source.raw_os_error() == Some(errno)),
        "wanted {op} failing with errno {errno}: {err}"
    );
    assert_eq!(w.head_lsn(), out.acked, "a failed append must not move the head");
    let (ops, files) = (fs.ops(), fs.files(&dir()));
    let again = w.append(&[candle(9_999)]).unwrap_err();
    assert!(matches!(&again, LogError::Poisoned { last_committed, .. } if *last_committed == out.acked), "{again}");
    let msg = again.to_string();
    assert!(msg.contains("poisoned") && msg.contains(&format!("nothing after LSN {} was committed", out.acked)), "{msg}");
    assert!(msg.contains(&err.to_string()), "the cause must be named: {msg}");
    assert!(matches!(w.seal(), Err(LogError::Poisoned { .. })));
    assert_eq!((fs.ops(), fs.files(&dir())), (ops, files), "a poisoned writer touched the disk");
}

/// The operation the writer names (`LogError::Io::op`) when op `i` of a
/// trace fails: the footer's write and fdatasync (followed by the next
/// segment's creation) fail as "seal".
fn op_name(trace: &[Op], i: usize) -> &'static str {
    let creates = |j: usize| matches!(trace.get(j), Some(Op::Create(_)));
    match &trace[i] {
        Op::Write { .. } if creates(i + 2) => "seal",
        Op::SyncData(_) if creates(i + 1) => "seal",
        Op::Write { .. } => "write",
        Op::SyncData(_) => "fdatasync",
        Op::SyncAll(_) => "fsync",
        Op::SyncDir(_) => "fsync directory",
        other => panic!("not a failpoint: {other:?}"),
    }
}

/// Indices of the trace's ops that `keep` selects.
fn indices(trace: &[Op], keep: impl Fn(&Op) -> bool) -> Vec<usize> {
    (0..trace.len()).filter(|&i| keep(&trace[i])).collect()
}

#[test]
fn a_failed_fsync_poisons_the_writer() {
    let batches = workload();
    let all: Vec<Event> = batches.concat();
    let dry = SimFs::new();
    run_workload(&dry, &batches);
    let trace = dry.trace();
    let file_syncs = indices(&trace, |o| matches!(o, Op::SyncData(_) | Op::SyncAll(_)));
    let dir_syncs = indices(&trace, |o| matches!(o, Op::SyncDir(_)));
    assert!(file_syncs.len() > 20 && dir_syncs.len() >= 5);
    assert!(file_syncs.iter().any(|&i| op_name(&trace, i) == "seal"));
    let cases =
        file_syncs.iter().enumerate().map(|(k, &i)| (k + 1, false, i)).chain(dir_syncs.iter().enumerate().map(|(k, &i)| (k + 1, true, i)));
    let mut cache = Decoded::new();
    for (k, is_dir, i) in cases {
        let fs = SimFs::new();
        if is_dir {
            fs.fail_dir_sync(k);
        } else {
            fs.fail_sync(k);
        }
        let (out, w) = run_workload(&fs, &batches);
        let what = format!("failing {} fsync {k}", if is_dir { "directory" } else { "file" });
        let Some(mut w) = w else { panic!("{what}: the first open failed: {:?}", out.error) };
        assert_poisoned(&fs, &mut w, &out, op_name(&trace, i), 5);
        // After a power cut: exactly what was acknowledged.
        check_reopen(&fs.crash(Bytes::Drop, Entries::Drop), &out, Expect::Acked, &all, &mut cache)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        // After a restart without one (the page cache may still hold the
        // frame whose fsync failed): the acknowledged LSN or that frame, and
        // appends continue from there.
        let img = fs.crash(Bytes::Keep, Entries::Keep);
        let head = check_reopen(&img, &out, Expect::AckedOrInflight, &all, &mut cache).unwrap_or_else(|e| panic!("{what}: {e}"));
        let (mut w, _) = LogWriter::open_with(Arc::new(img.clone()), &dir(), opts()).unwrap();
        w.append(&all[head as usize..]).unwrap_or_else(|e| panic!("{what}: {e}"));
        let done = Progress { acked: all.len() as u64, inflight: None, error: None };
        check_reopen(&img.crash(Bytes::Drop, Entries::Drop), &done, Expect::Acked, &all, &mut cache)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

#[test]
fn a_full_disk_poisons_the_writer() {
    let batches = workload();
    let all: Vec<Event> = batches.concat();
    let dry = SimFs::new();
    run_workload(&dry, &batches);
    let trace = dry.trace();
    let writes = indices(&trace, |o| matches!(o, Op::Write { .. }));
    assert!(writes.len() > 20 && writes.iter().any(|&i| op_name(&trace, i) == "seal"));
    let mut cache = Decoded::new();
    for (k, &i) in writes.iter().enumerate() {
        let Op::Write { len, .. } = trace[i] else { unreachable!() };
        for partial in [0, 1, len / 2, len - 1] {
            let fs = SimFs::new();
            fs.fail_write(k + 1, partial);
            let (out, w) = run_workload(&fs, &batches);
            let what = format!("ENOSPC on write {} after {partial} of {len} bytes", k + 1);
            let mut w = w.unwrap_or_else(|| panic!("{what}: {:?}", out.error));
            assert_poisoned(&fs, &mut w, &out, op_name(&trace, i), 28);
            // The service restarts (no power cut) or the power goes: either
            // way the partial write is cut and nothing acknowledged is lost.
            for img in [fs.crash(Bytes::Keep, Entries::Keep), fs.crash(Bytes::Drop, Entries::Drop)] {
                check_reopen(&img, &out, Expect::Acked, &all, &mut cache).unwrap_or_else(|e| panic!("{what}: {e}"));
            }
        }
    }
}

#[test]
fn the_reader_replays_a_crashed_log_as_the_writer_left_it() {
    // The in-memory checks above use scan_segment; here the real LogReader
    // replays a few crashed and reopened logs written out to a directory.
    let batches = workload();
    let all: Vec<Event> = batches.concat();
    let total = {
        let dry = SimFs::new();
        run_workload(&dry, &batches);
        dry.ops()
    };
    for n in (0..=total).step_by(7) {
        let fs = SimFs::new();
        fs.power_cut_after(n);
        let (out, _) = run_workload(&fs, &batches);
        let img = fs.crash(Bytes::Keep, Entries::Keep);
        let (w, _) = LogWriter::open_with(Arc::new(img.clone()), &dir(), opts()).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        for (name, bytes) in img.files(&dir()) {
            std::fs::write(tmp.path().join(name), bytes).unwrap();
        }
        let mut events = Vec::new();
        let end = LogReader::open(tmp.path())
            .unwrap()
            .replay(super::ChainPos::GENESIS, |_, evs| {
                events.extend(evs);
                Ok::<(), LogError>(())
            })
            .unwrap();
        assert_eq!((end.head_lsn, end.head_hash), (w.head_lsn(), w.head_hash()), "op {n}");
        assert!(end.head_lsn == out.acked || Some(end.head_lsn) == out.inflight, "op {n}");
        assert!(events[..] == all[..events.len()] && events.len() as u64 == end.head_lsn, "op {n}");
    }
}
