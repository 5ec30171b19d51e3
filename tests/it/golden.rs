//! Golden vectors of the segment format (format/README.md): regenerates every
//! vector in memory and compares it byte for byte with the frozen file, then
//! decodes each frozen file exactly as format/segment.md says it must decode.
//!
//! To (re)create the files after an intended format change:
//! `CANDLELOG_BLESS=1 cargo test --test main golden::vectors_match_committed_files`,
//! then update the hashes, offsets and raw-payload hex below and the tables in format/.

use std::path::{Path, PathBuf};

use candlelog::event::codec::{decode_events, decode_events_format, encode_events, required_format};
use candlelog::event::{
    Anchor, AnchorSeries, AnchorTable, Candle, Decimal, Event, Gap, Interval, Loss, LostSeries, Outcome, OutcomeStatus, Run, RunKind,
    Symbol,
};
use candlelog::log::frame::{
    EVENT_FORMAT_LOSS, FRAME_HASH_LEN, FRAME_HEADER_LEN, FRAME_OVERHEAD, FrameHeader, encode_frame, encode_frame_format, encode_loss_frame,
};
use candlelog::log::salvage::{SalvageSpec, salvage};
use candlelog::log::segment::{FOOTER_LEN, Footer, GENESIS_HASH, SEGMENT_HEADER_LEN, SEGMENT_VERSION_LOSS, SegmentHeader};
use candlelog::log::{ChainPos, Damage, LogWriter, SegmentEnd, SegmentScan, decode_frame, scan_segment};

// ---------------------------------------------------------------------------
// The fixed inputs of the vectors (format/README.md, "Contents").

/// Segment 1 created 2026-01-22 16:00:04 UTC.
const SEG1_CREATED_MS: i64 = 1_769_097_604_000;
/// Segment 2 created 2026-01-22 20:00:04 UTC.
const SEG2_CREATED_MS: i64 = 1_769_112_004_000;
/// Frame 1 (LSN 1-2) committed 2026-01-22 16:00:05 UTC.
const FRAME1_COMMIT_MS: i64 = 1_769_097_605_000;
/// Frame 2 (LSN 3-4) committed 2026-01-22 16:00:06.500 UTC.
const FRAME2_COMMIT_MS: i64 = 1_769_097_606_500;
/// Frame 3 (LSN 5) committed 2026-01-22 20:00:05 UTC.
const FRAME3_COMMIT_MS: i64 = 1_769_112_005_000;
/// Frame 4 (LSN 6-7, event format 2: a backup run and a drill run)
/// committed 2026-01-22 20:00:09 UTC.
const FRAME4_COMMIT_MS: i64 = 1_769_112_009_000;
/// zstd level the writer uses by default.
const ZSTD_LEVEL: i32 = 3;
/// Byte of frame 1's payload that `flipped_payload.seg` flips (XOR 0x01).
const FLIP_PAYLOAD_INDEX: usize = 12;
/// Bytes of the 96-byte footer that `truncated_footer.seg` keeps.
const TRUNCATED_FOOTER_KEEP: usize = 40;
/// Zero bytes `zero_tail.seg` appends to `active.seg`.
const ZERO_TAIL_LEN: usize = 64;
/// Bytes of frame 3's 40-byte header that `zero_check_tail.seg` keeps; the
/// `header_check` (bytes 36..40) and everything after it are zeros.
const ZERO_CHECK_KEEP: usize = 36;
/// When `loss.seg`'s loss was recorded: 2026-01-22 21:00:04 UTC.
const LOSS_RECORDED_MS: i64 = 1_769_115_604_000;
/// `base_hash` of `non_genesis_base.seg`: anything but the genesis hash.
const NON_GENESIS_BASE: [u8; 32] = [0xa5; 32];

// Expected values, frozen when the vectors were blessed. A change here is a
// format change: see format/segment.md, "Compatibility".

/// Chain hash after frame 1 of segment 1 (LSN 2).
pub(crate) const FRAME1_HASH_HEX: &str = "18dbb73428db4cc23ee885113fdf7848c46b10247440dfcfe9c5cee6337138ff";
/// Head hash of `active.seg` / `sealed.seg` (after LSN 4).
pub(crate) const SEG1_HEAD_HEX: &str = "806fc4addd7789e787b87576ca28f9b6c2e2e6a1be7615b10cba802a81ab97ca";
/// Head hash of `second.seg` (after LSN 5).
pub(crate) const SEG2_HEAD_HEX: &str = "ea6ab5b41f6cb67794cfbb0c23abc531a5d23179e6816081041198202853c1ea";
/// Head hash of `event_format_2.seg` (segment 2 sealed, after LSN 7).
pub(crate) const SEG2_SEALED_HEAD_HEX: &str = "34049a8869b05e0cdc036d335570657dcdd2373c3904e28baf898856d31623be";
/// Offset of frame 4 in `event_format_2.seg` (= 80 + frame 3's 138 bytes).
const FRAME4_OFFSET: u64 = 218;
/// Length of `event_format_2.seg` (its footer starts 96 bytes before).
const EVENT_FORMAT_2_LEN: u64 = 599;
/// Offset of frame 2 in segment 1 (= 80 + frame 1's 177 bytes).
pub(crate) const FRAME2_OFFSET: u64 = 257;
/// Length of `active.seg` = offset of the footer in `sealed.seg`.
const ACTIVE_LEN: u64 = 529;
/// Raw (uncompressed) payload of frame 1, LSN 1-2 (format/segment.md, "Worked example").
const FRAME1_RAW_HEX: &str = concat!(
    "0101",                             // tags: Candle, Candle
    "0107534b5255534454",               // dictionary: ["SKRUSDT"]
    "0000",                             // sym
    "0808",                             // interval: 4h, 4h
    "80a0bdcbfc6680e8dd0d",             // open_time deltas
    "fee7dd0dfee7dd0d",                 // span: close_time − open_time
    "06060606000600060606060600060006", // decimal heads, 8 per candle
    "c0e70300",                         // open − previous close
    "a814a814",                         // close − open
    "e807d804",                         // high − max(open, close)
    "9811e807",                         // min(open, close) − low
    "c0c407cd8306",                     // volume
    "80d799c40e95f7a0a60c",             // quote_volume
    "e0d403b88e03",                     // taker_buy_volume
    "80e6fe8907d09990ad06",             // taker_buy_quote_volume
    "ac068005",                         // trades
);
/// Raw (uncompressed) payload of frame 2, LSN 3-4: a candle and a run.
const FRAME2_RAW_HEX: &str = concat!(
    "0102",                                                 // tags: Candle, Run
    "010742544355534454",                                   // dictionary: ["BTCUSDT"]
    "00",                                                   // sym
    "0c",                                                   // interval 1d
    "80e0ceddfb66",                                         // open_time
    "feefb252",                                             // span
    "0202020203020302",                                     // decimal heads
    "a8f7bf08d48c0aa4da06c4cb0d",                           // open, close, high, low
    "ceb8d2488ce89aecd127fbd69e24b7d6ecaae313",             // the four volumes
    "95fed201",                                             // trades
    "8101",                                                 // run body_len 129
    "01",                                                   // kind sync
    "1973796e632d323032362d30312d32325431363a30303a30305a", // id
    "001c6fe69b01000070336fe69b010000",                     // started_ms, ended_ms
    "04",                                                   // 4 outcomes
    "07534b52555344540801020000",                           // SKRUSDT 4h ok 2 0 ""
    "07425443555344540c01010000",                           // BTCUSDT 1d ok 1 0 ""
    "07455448555344540002000016",                           // ETHUSDT - failed 0 0, message:
    "48545450203432393a2072617465206c696d69746564",         // "HTTP 429: rate limited"
    "08444f474555534454060300000a6e6f74206c6973746564",     // DOGEUSDT 1h skipped 0 0 "not listed"
);

/// Raw (uncompressed) payload of frame 4, LSN 6-7: two runs of event format 2
/// (format/segment.md, "Worked example, event format 2").
const FRAME4_RAW_HEX: &str = concat!(
    "0202",                                                             // tags: Run, Run
    "00",                                                               // dict_len 0: no candles, every column empty
    "9a01",                                                             // run body_len 154
    "05",                                                               // kind backup
    "196261636b75702d313736393131323030363030302d34323432",             // id "backup-1769112006000-4242"
    "70ed4ae79b0100004cf34ae79b010000",                                 // started_ms, ended_ms
    "02",                                                               // 2 outcomes
    "162f7661722f6261636b7570732f63616e646c656c6f67",                   // unit "/var/backups/candlelog"
    "00010100",                                                         // no interval, ok, appended 1, revisions 0
    "26736e617073686f74206174204c534e20352c20313834332062797465732075", // message "snapshot at LSN 5, 1843 bytes u…
    "706c6f61646564",                                                   // …ploaded"
    "1473333a2f2f63616e646c65732f6e696768746c79",                       // unit "s3://candles/nightly"
    "00020000",                                                         // no interval, failed, 0, 0
    "12636f6e6e656374696f6e2072656675736564",                           // message "connection refused"
    "65",                                                               // run body_len 101
    "06",                                                               // kind drill
    "186472696c6c2d313736393131323030383630302d34323433",               // id "drill-1769112008600-4243"
    "dcf44ae79b01000098f74ae79b010000",                                 // started_ms, ended_ms
    "01",                                                               // 1 outcome
    "162f7661722f6261636b7570732f63616e646c656c6f67",                   // unit "/var/backups/candlelog"
    "00010000",                                                         // no interval, ok, 0, 0
    "1e726573746f726564204c534e203620696e20363430206d73202852544f29",   // message "restored LSN 6 in 640 ms (RTO)"
);

// ---------------------------------------------------------------------------
// Building the vectors.

fn d(s: &str) -> Decimal {
    Decimal::parse(s).unwrap()
}

#[allow(clippy::too_many_arguments)]
fn candle(
    symbol: &str,
    interval: Interval,
    open_time: i64,
    close_time: i64,
    ohlc: [&str; 4],
    volume: &str,
    quote_volume: &str,
    trades: u64,
    taker_buy: [&str; 2],
) -> Candle {
    Candle {
        symbol: Symbol::parse(symbol).unwrap(),
        interval,
        open_time,
        close_time,
        open: d(ohlc[0]),
        high: d(ohlc[1]),
        low: d(ohlc[2]),
        close: d(ohlc[3]),
        volume: d(volume),
        quote_volume: d(quote_volume),
        trades,
        taker_buy_volume: d(taker_buy[0]),
        taker_buy_quote_volume: d(taker_buy[1]),
    }
}

/// LSN 1: SKRUSDT 4h opening 2026-01-22 08:00 UTC.
pub(crate) fn candle1() -> Candle {
    candle(
        "SKRUSDT",
        Interval::H4,
        1_769_068_800_000,
        1_769_083_199_999,
        ["0.031200", "0.033000", "0.030100", "0.032500"],
        "123456",
        "3901.123456",
        812,
        ["60000", "1900.000000"],
    )
}

/// LSN 2: SKRUSDT 4h opening 2026-01-22 12:00 UTC.
pub(crate) fn candle2() -> Candle {
    candle(
        "SKRUSDT",
        Interval::H4,
        1_769_083_200_000,
        1_769_097_599_999,
        ["0.032500", "0.034100", "0.032000", "0.033800"],
        "98765",
        "3301.456789",
        640,
        ["51000", "1705.250000"],
    )
}

/// LSN 3: BTCUSDT 1d opening 2026-01-21 00:00 UTC.
pub(crate) fn candle3() -> Candle {
    candle(
        "BTCUSDT",
        Interval::D1,
        1_768_953_600_000,
        1_769_039_999_999,
        ["89123.40", "90500.00", "88010.10", "89950.70"],
        "152345.678",
        "13620000000.12",
        3_456_789,
        ["76000.123", "6795000000.55"],
    )
}

/// One outcome of a run record, without revisions.
fn outcome(unit: &str, interval: Option<Interval>, status: OutcomeStatus, appended: u64, message: &str) -> Outcome {
    Outcome { unit: unit.into(), interval, status, appended, revisions: 0, message: message.into() }
}

/// LSN 4: the sync run that appended LSN 1-3; one outcome of each status.
fn run4() -> Run {
    Run {
        kind: RunKind::Sync,
        id: "sync-2026-01-22T16:00:00Z".into(),
        started_ms: 1_769_097_600_000,
        ended_ms: 1_769_097_606_000,
        outcomes: vec![
            outcome("SKRUSDT", Some(Interval::H4), OutcomeStatus::Ok, 2, ""),
            outcome("BTCUSDT", Some(Interval::D1), OutcomeStatus::Ok, 1, ""),
            outcome("ETHUSDT", None, OutcomeStatus::Failed, 0, "HTTP 429: rate limited"),
            outcome("DOGEUSDT", Some(Interval::H1), OutcomeStatus::Skipped, 0, "not listed"),
        ],
    }
}

/// LSN 5: SKRUSDT 4h opening 2026-01-22 16:00 UTC.
pub(crate) fn candle5() -> Candle {
    candle(
        "SKRUSDT",
        Interval::H4,
        1_769_097_600_000,
        1_769_111_999_999,
        ["0.033800", "0.035000", "0.033500", "0.034900"],
        "110200",
        "3790.880000",
        701,
        ["57000", "1961.004000"],
    )
}

/// LSN 6: a backup run (kind 5, event format 2): one repository written, one failed.
fn run6_backup() -> Run {
    Run {
        kind: RunKind::Backup,
        id: "backup-1769112006000-4242".into(),
        started_ms: 1_769_112_006_000,
        ended_ms: 1_769_112_007_500,
        outcomes: vec![
            Outcome {
                unit: "/var/backups/candlelog".into(),
                interval: None,
                status: OutcomeStatus::Ok,
                appended: 1,
                revisions: 0,
                message: "snapshot at LSN 5, 1843 bytes uploaded".into(),
            },
            Outcome {
                unit: "s3://candles/nightly".into(),
                interval: None,
                status: OutcomeStatus::Failed,
                appended: 0,
                revisions: 0,
                message: "connection refused".into(),
            },
        ],
    }
}

/// LSN 7: a drill run (kind 6, event format 2) that restored LSN 6.
fn run7_drill() -> Run {
    Run {
        kind: RunKind::Drill,
        id: "drill-1769112008600-4243".into(),
        started_ms: 1_769_112_007_900,
        ended_ms: 1_769_112_008_600,
        outcomes: vec![Outcome {
            unit: "/var/backups/candlelog".into(),
            interval: None,
            status: OutcomeStatus::Ok,
            appended: 0,
            revisions: 0,
            message: "restored LSN 6 in 640 ms (RTO)".into(),
        }],
    }
}

pub(crate) fn frame1_events() -> Vec<Event> {
    vec![Event::Candle(candle1()), Event::Candle(candle2())]
}
pub(crate) fn frame2_events() -> Vec<Event> {
    vec![Event::Candle(candle3()), Event::Run(run4())]
}
pub(crate) fn frame3_events() -> Vec<Event> {
    vec![Event::Candle(candle5())]
}
pub(crate) fn frame4_events() -> Vec<Event> {
    vec![Event::Run(run6_backup()), Event::Run(run7_drill())]
}

fn raw_events(events: &[Event]) -> Vec<u8> {
    let mut raw = Vec::new();
    encode_events(&mut raw, events);
    raw
}

/// Appends one frame holding `events` to `out`; returns its chain hash.
fn push_frame(out: &mut Vec<u8>, prev: &[u8; 32], first_lsn: u64, commit_ms: i64, events: &[Event]) -> [u8; 32] {
    let raw = raw_events(events);
    let payload = zstd::bulk::compress(&raw, ZSTD_LEVEL).unwrap();
    let (_, hash) = encode_frame(out, prev, first_lsn, events.len() as u32, commit_ms, &raw, &payload);
    hash
}

/// `push_frame` stamped with the event format the writer chooses
/// (`required_format`: 2 when a backup or drill run is in the frame).
fn push_frame_as_writer(out: &mut Vec<u8>, prev: &[u8; 32], first_lsn: u64, commit_ms: i64, events: &[Event]) -> [u8; 32] {
    let raw = raw_events(events);
    let payload = zstd::bulk::compress(&raw, ZSTD_LEVEL).unwrap();
    let format = required_format(events);
    let (_, hash) = encode_frame_format(out, prev, first_lsn, events.len() as u32, commit_ms, &raw, &payload, format);
    hash
}

fn seg1_header() -> [u8; SEGMENT_HEADER_LEN] {
    SegmentHeader { seq: 1, first_lsn: 1, base_hash: GENESIS_HASH, created_ms: SEG1_CREATED_MS }.encode()
}

/// Segment 1 without footer (LSN 1-4 in two frames) and its head hash.
fn active() -> (Vec<u8>, [u8; 32]) {
    let mut b = seg1_header().to_vec();
    let h1 = push_frame(&mut b, &GENESIS_HASH, 1, FRAME1_COMMIT_MS, &frame1_events());
    let h2 = push_frame(&mut b, &h1, 3, FRAME2_COMMIT_MS, &frame2_events());
    (b, h2)
}

pub(crate) fn sealed() -> Vec<u8> {
    let (mut b, head) = active();
    let footer = Footer { last_lsn: 4, frame_count: 2, footer_offset: b.len() as u64, head_hash: head };
    b.extend_from_slice(&footer.encode());
    b
}

/// Segment 2, active: continues the chain of `sealed.seg` with LSN 5.
fn second() -> Vec<u8> {
    let (_, seg1_head) = active();
    let mut b = SegmentHeader { seq: 2, first_lsn: 5, base_hash: seg1_head, created_ms: SEG2_CREATED_MS }.encode().to_vec();
    push_frame(&mut b, &seg1_head, 5, FRAME3_COMMIT_MS, &frame3_events());
    b
}

/// Segment 2, sealed: frame 3 (LSN 5, event format 1, the same bytes as in
/// `second.seg`), then frame 4 (LSN 6-7, a backup and a drill run, event
/// format 2), then the footer.
pub(crate) fn event_format_2() -> Vec<u8> {
    let (_, seg1_head) = active();
    let mut b = SegmentHeader { seq: 2, first_lsn: 5, base_hash: seg1_head, created_ms: SEG2_CREATED_MS }.encode().to_vec();
    let h3 = push_frame_as_writer(&mut b, &seg1_head, 5, FRAME3_COMMIT_MS, &frame3_events());
    let h4 = push_frame_as_writer(&mut b, &h3, 6, FRAME4_COMMIT_MS, &frame4_events());
    let footer = Footer { last_lsn: 7, frame_count: 2, footer_offset: b.len() as u64, head_hash: h4 };
    b.extend_from_slice(&footer.encode());
    b
}

/// Segment 2 sealed after frame 3 alone: the golden chain, but another
/// history than `event_format_2()` (two histories of one repository).
pub(crate) fn second_sealed() -> Vec<u8> {
    let (_, seg1_head) = active();
    let mut b = SegmentHeader { seq: 2, first_lsn: 5, base_hash: seg1_head, created_ms: SEG2_CREATED_MS }.encode().to_vec();
    let h3 = push_frame(&mut b, &seg1_head, 5, FRAME3_COMMIT_MS, &frame3_events());
    let footer = Footer { last_lsn: 5, frame_count: 1, footer_offset: b.len() as u64, head_hash: h3 };
    b.extend_from_slice(&footer.encode());
    b
}

/// A sealed segment 1 of another chain: the golden first frame's events,
/// committed a millisecond later (so every chain hash differs).
pub(crate) fn foreign_sealed() -> Vec<u8> {
    let mut b = seg1_header().to_vec();
    let h1 = push_frame(&mut b, &GENESIS_HASH, 1, FRAME1_COMMIT_MS + 1, &frame1_events());
    let footer = Footer { last_lsn: 2, frame_count: 1, footer_offset: b.len() as u64, head_hash: h1 };
    b.extend_from_slice(&footer.encode());
    b
}

/// `active.seg` plus the first half of the frame that would hold LSN 5.
fn torn_tail() -> Vec<u8> {
    let (mut b, head) = active();
    let mut frame = Vec::new();
    push_frame(&mut frame, &head, 5, FRAME3_COMMIT_MS, &frame3_events());
    b.extend_from_slice(&frame[..frame.len() / 2]);
    b
}

fn zero_tail() -> Vec<u8> {
    let (mut b, _) = active();
    b.resize(b.len() + ZERO_TAIL_LEN, 0);
    b
}

fn flipped_payload() -> Vec<u8> {
    let mut b = sealed();
    b[SEGMENT_HEADER_LEN + FRAME_HEADER_LEN + FLIP_PAYLOAD_INDEX] ^= 0x01;
    b
}

fn wrong_magic() -> Vec<u8> {
    let mut b = sealed();
    b[0] = b'X';
    b
}

fn truncated_footer() -> Vec<u8> {
    let mut b = sealed();
    b.truncate(b.len() - FOOTER_LEN + TRUNCATED_FOOTER_KEEP);
    b
}

/// `active.seg` with version 3 in its header (header check recomputed, so
/// only the version differs from a valid version-1 header).
fn future_version() -> Vec<u8> {
    let (mut b, _) = active();
    b[8..10].copy_from_slice(&3u16.to_le_bytes());
    let check = blake3::hash(&b[0..72]);
    b[72..80].copy_from_slice(&check.as_bytes()[0..8]);
    b
}

/// Frame 3 (LSN 5) as it would follow `active.seg`.
fn frame3_after_active() -> Vec<u8> {
    let (_, head) = active();
    let mut frame = Vec::new();
    push_frame(&mut frame, &head, 5, FRAME3_COMMIT_MS, &frame3_events());
    frame
}

/// `active.seg` plus frame 3 whose header landed but whose payload and hash
/// are zeros (torn-tail rule "zero hash").
fn zero_hash_tail() -> Vec<u8> {
    let (mut b, _) = active();
    let mut frame = frame3_after_active();
    frame[FRAME_HEADER_LEN..].fill(0);
    b.extend_from_slice(&frame);
    b
}

/// `active.seg` plus frame 3 of which only the first 36 header bytes landed:
/// its `header_check`, payload and hash are zeros (torn-tail rule "zero check").
fn zero_check_tail() -> Vec<u8> {
    let (mut b, _) = active();
    let mut frame = frame3_after_active();
    frame[ZERO_CHECK_KEEP..].fill(0);
    b.extend_from_slice(&frame);
    b
}

/// Segment 1 whose `base_hash` is not the genesis hash; frame 1 (LSN 1-2)
/// is chained from that base, so only the segment's start is wrong.
fn non_genesis_base() -> Vec<u8> {
    let mut b = SegmentHeader { seq: 1, first_lsn: 1, base_hash: NON_GENESIS_BASE, created_ms: SEG1_CREATED_MS }.encode().to_vec();
    push_frame(&mut b, &NON_GENESIS_BASE, 1, FRAME1_COMMIT_MS, &frame1_events());
    b
}

/// The loss `loss.seg` records: frame 3 (LSN 5, the SKRUSDT candle opening
/// 2026-01-22 16:00 UTC) lost; the chain resumes from frame 3's hash.
fn loss5() -> Loss {
    Loss {
        first_lsn: 5,
        last_lsn: 5,
        segment: 2,
        before_hash: from_hex(SEG1_HEAD_HEX),
        resumed_hash: from_hex(SEG2_HEAD_HEX),
        recorded_ms: LOSS_RECORDED_MS,
        reason: "segment 2: bytes 80..218 are damaged".into(),
        series: vec![LostSeries {
            symbol: Symbol::parse("SKRUSDT").unwrap(),
            interval: Interval::H4,
            first_open: 1_769_097_600_000,
            last_open: 1_769_097_600_000,
        }],
    }
}

/// Segment 2, version 2, sealed: a loss frame standing for LSN 5 (frame 3 of
/// `second.seg`, lost), committed at frame 2's time (the floor), then the
/// footer. The chain goes on from frame 3's hash.
fn loss() -> Vec<u8> {
    let (_, seg1_head) = active();
    let header = SegmentHeader { seq: 2, first_lsn: 5, base_hash: seg1_head, created_ms: SEG2_CREATED_MS };
    let mut b = header.encode_version(SEGMENT_VERSION_LOSS).to_vec();
    encode_loss_frame(&mut b, &loss5(), FRAME2_COMMIT_MS).unwrap();
    let footer = Footer { last_lsn: 5, frame_count: 1, footer_offset: b.len() as u64, head_hash: from_hex(SEG2_HEAD_HEX) };
    b.extend_from_slice(&footer.encode());
    b
}

/// Segment 3's creation and its one frame's commit (event format 4).
const SEG3_CREATED_MS: i64 = 1_769_200_000_000;
const FRAME5_COMMIT_MS: i64 = 1_769_200_001_000;

/// LSN 8: a confirmed exchange gap, three 4h candles the exchange never had;
/// LSN 9: a sync run whose symbols were ok, retired, paused and invalid.
pub(crate) fn frame5_events() -> Vec<Event> {
    let gap = Gap {
        symbol: Symbol::parse("SKRUSDT").unwrap(),
        interval: Interval::H4,
        first_open: 1_769_126_400_000,
        last_open: 1_769_155_200_000,
    };
    let run = Run {
        kind: RunKind::Sync,
        id: "sync-1769200000500-4244".into(),
        started_ms: 1_769_200_000_500,
        ended_ms: 1_769_200_000_900,
        outcomes: vec![
            outcome("SKRUSDT", Some(Interval::H4), OutcomeStatus::Ok, 3, ""),
            outcome("LUNAUSDT", Some(Interval::H4), OutcomeStatus::Retired, 1, ""),
            outcome("ZILUSDT", None, OutcomeStatus::Paused, 0, "ZILUSDT is not trading (status BREAK)"),
            outcome("NOPEUSDT", None, OutcomeStatus::Invalid, 0, "NOPEUSDT is unknown to the exchange"),
        ],
    };
    vec![Event::Gap(gap), Event::Run(run)]
}

/// Segment 3, sealed, after `event_format_2.seg`: frame 5 (LSN 8–9, a gap
/// and a sync run with the statuses of event format 4), then the footer.
pub(crate) fn event_format_4() -> Vec<u8> {
    event_format_4_and_head().0
}

/// `event_format_4.seg` and its head hash (the hash after frame 5).
fn event_format_4_and_head() -> (Vec<u8>, [u8; 32]) {
    let base = from_hex(SEG2_SEALED_HEAD_HEX);
    let mut b = SegmentHeader { seq: 3, first_lsn: 8, base_hash: base, created_ms: SEG3_CREATED_MS }.encode().to_vec();
    let h5 = push_frame_as_writer(&mut b, &base, 8, FRAME5_COMMIT_MS, &frame5_events());
    let footer = Footer { last_lsn: 9, frame_count: 1, footer_offset: b.len() as u64, head_hash: h5 };
    b.extend_from_slice(&footer.encode());
    (b, h5)
}

/// Segment 4's creation and its one frame's commit (event format 5).
const SEG4_CREATED_MS: i64 = 1_769_300_000_000;
const FRAME6_COMMIT_MS: i64 = 1_769_300_001_000;

/// LSN 10: the service's record when it stops (run kind 7, `service`): one
/// streamed series ok, one failed, the reason it stopped on the first.
pub(crate) fn frame6_events() -> Vec<Event> {
    vec![Event::Run(Run {
        kind: RunKind::Service,
        id: "service-1769200002000-4245".into(),
        started_ms: 1_769_200_002_000,
        ended_ms: 1_769_300_000_500,
        outcomes: vec![
            outcome("SKRUSDT", Some(Interval::H4), OutcomeStatus::Ok, 6, "stopped by SIGTERM"),
            outcome("BTCUSDT", Some(Interval::D1), OutcomeStatus::Failed, 0, ""),
        ],
    })]
}

/// Segment 4, sealed, after `event_format_4.seg`: frame 6 (LSN 10, a
/// service run, event format 5), then the footer.
pub(crate) fn event_format_5() -> Vec<u8> {
    let base = event_format_4_and_head().1;
    let mut b = SegmentHeader { seq: 4, first_lsn: 10, base_hash: base, created_ms: SEG4_CREATED_MS }.encode().to_vec();
    let h6 = push_frame_as_writer(&mut b, &base, 10, FRAME6_COMMIT_MS, &frame6_events());
    let footer = Footer { last_lsn: 10, frame_count: 1, footer_offset: b.len() as u64, head_hash: h6 };
    b.extend_from_slice(&footer.encode());
    b
}

/// `event_format_5.seg` and its head hash (the hash after frame 6).
fn event_format_5_head() -> [u8; 32] {
    let base = event_format_4_and_head().1;
    let mut b = Vec::new();
    push_frame_as_writer(&mut b, &base, 10, FRAME6_COMMIT_MS, &frame6_events())
}

const SEG5_CREATED_MS: i64 = 1_769_400_000_000;
const FRAME7_COMMIT_MS: i64 = 1_769_400_001_000;

/// LSN 11: a backup's anchor of a snapshot at LSN 9 (after frame 5): two
/// tables, two series, both checks passed.
pub(crate) fn frame7_events() -> Vec<Event> {
    let series = |sym: &str, interval, candles, first_open, last_open, opens, digests| AnchorSeries {
        symbol: Symbol::parse(sym).unwrap(),
        interval,
        candles,
        first_open,
        last_open,
        opens,
        digests,
    };
    vec![Event::Anchor(Anchor {
        lsn: 9,
        head_hash: [0x5a; 32],
        raw_bytes: 61_440,
        raw_blake3: [0xc3; 32],
        checks: 3,
        tables: vec![
            AnchorTable { interval: Interval::H4, rows: 4, digest: [0x11; 32] },
            AnchorTable { interval: Interval::D1, rows: 1, digest: [0x22; 32] },
        ],
        series: vec![
            series("SKRUSDT", Interval::H4, 4, 1_769_097_600_000, 1_769_140_800_000, -1, u128::MAX - 7),
            series("BTCUSDT", Interval::D1, 1, 1_769_040_000_000, 1_769_040_000_000, 1_769_040_000_000, 42),
        ],
    })]
}

/// Segment 5, sealed, after `event_format_5.seg`: frame 7 (LSN 11, an
/// anchor, event format 6), then the footer.
pub(crate) fn event_format_6() -> Vec<u8> {
    let base = event_format_5_head();
    let mut b = SegmentHeader { seq: 5, first_lsn: 11, base_hash: base, created_ms: SEG5_CREATED_MS }.encode().to_vec();
    let h7 = push_frame_as_writer(&mut b, &base, 11, FRAME7_COMMIT_MS, &frame7_events());
    let footer = Footer { last_lsn: 11, frame_count: 1, footer_offset: b.len() as u64, head_hash: h7 };
    b.extend_from_slice(&footer.encode());
    b
}

fn all_vectors() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("sealed.seg", sealed()),
        ("active.seg", active().0),
        ("second.seg", second()),
        ("torn_tail.seg", torn_tail()),
        ("zero_tail.seg", zero_tail()),
        ("flipped_payload.seg", flipped_payload()),
        ("wrong_magic.seg", wrong_magic()),
        ("truncated_footer.seg", truncated_footer()),
        ("future_version.seg", future_version()),
        ("zero_hash_tail.seg", zero_hash_tail()),
        ("zero_check_tail.seg", zero_check_tail()),
        ("non_genesis_base.seg", non_genesis_base()),
        ("event_format_2.seg", event_format_2()),
        ("loss.seg", loss()),
        ("event_format_4.seg", event_format_4()),
        ("event_format_5.seg", event_format_5()),
        ("event_format_6.seg", event_format_6()),
    ]
}

// ---------------------------------------------------------------------------
// Helpers for the decode tests.

pub(crate) fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("format").join("vectors")
}

fn read_vector(name: &str) -> (PathBuf, Vec<u8>) {
    let path = vectors_dir().join(name);
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; create the vectors with CANDLELOG_BLESS=1 (see tests/it/golden.rs)", path.display()));
    (path, bytes)
}

fn scan(name: &str, seq: u64, is_last: bool, expect: Option<(u64, [u8; 32])>) -> (Vec<u8>, SegmentScan) {
    let (path, bytes) = read_vector(name);
    let s = scan_segment(&path, seq, &bytes, is_last, expect.map(|(next, hash)| ChainPos::new(next - 1, hash)));
    (bytes, s)
}

fn hex(b: &[u8; 32]) -> String {
    blake3::Hash::from_bytes(*b).to_hex().to_string()
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn from_hex(s: &str) -> [u8; 32] {
    blake3::Hash::from_hex(s).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}")).into()
}

/// Decodes every frame of a scan.
fn events_of(bytes: &[u8], s: &SegmentScan) -> Vec<Vec<Event>> {
    let mut dec = zstd::bulk::Decompressor::new().unwrap();
    s.frames.iter().map(|m| decode_frame(&bytes[m.offset as usize..], m, &mut dec).unwrap()).collect()
}

fn only_damage(s: &SegmentScan) -> &Damage {
    assert_eq!(s.damage.len(), 1, "expected exactly one damage, got {:#?}", s.damage);
    &s.damage[0]
}

/// Segment 1's frame offsets and lengths, computed from the spec's sizes.
struct Layout {
    frame1_len: u64,
    frame2_off: u64,
    /// Length of `active.seg` = offset of the footer in `sealed.seg`.
    active_len: u64,
}

/// Computed from the frozen `active.seg`, so that the decode tests depend on
/// the frozen files only (a zstd upgrade must fail `vectors_match_committed_files` alone).
fn layout() -> Layout {
    let (_, bytes) = read_vector("active.seg");
    let len_at = |off: usize| u64::from(u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap())) + FRAME_OVERHEAD as u64;
    let frame1_len = len_at(SEGMENT_HEADER_LEN);
    let frame2_off = SEGMENT_HEADER_LEN as u64 + frame1_len;
    let active_len = frame2_off + len_at(frame2_off as usize);
    assert_eq!(active_len, bytes.len() as u64);
    // The offsets format/README.md and format/segment.md state.
    assert_eq!((frame2_off, active_len), (FRAME2_OFFSET, ACTIVE_LEN));
    Layout { frame1_len, frame2_off, active_len }
}

/// Frame 3 (LSN 5) as frozen in `second.seg`: the same bytes as
/// `frame3_after_active()`, which the tails after `active.seg` are built from.
fn frozen_frame3() -> Vec<u8> {
    read_vector("second.seg").1[SEGMENT_HEADER_LEN..].to_vec()
}

// ---------------------------------------------------------------------------
// (a) The frozen files are what the code produces.

#[test]
fn vectors_match_committed_files() {
    let dir = vectors_dir();
    let bless = std::env::var("CANDLELOG_BLESS").is_ok_and(|v| v == "1");
    for (name, bytes) in all_vectors() {
        assert!(bytes.len() < 4096, "{name} is {} bytes; keep vectors under 4 KiB", bytes.len());
        let path = dir.join(name);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
            continue;
        }
        let frozen = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; bless with CANDLELOG_BLESS=1", path.display()));
        if frozen != bytes {
            let at = frozen.iter().zip(&bytes).position(|(a, b)| a != b).unwrap_or(frozen.len().min(bytes.len()));
            panic!(
                "{name}: the code now writes different bytes than the frozen vector (first difference at byte offset {at}; \
                 frozen {} bytes, generated {} bytes). This is a format change: see format/segment.md, \"Compatibility\".",
                frozen.len(),
                bytes.len()
            );
        }
    }
}

/// The spec's hash definitions, recomputed with blake3 directly rather than
/// through the crate's own helpers.
#[test]
fn hashes_follow_the_spec_definitions() {
    let (_, bytes) = read_vector("sealed.seg");
    let l = layout();
    let h = &bytes[..SEGMENT_HEADER_LEN];
    assert_eq!(&h[0..8], b"CLOGSEG\0");
    assert_eq!(u16::from_le_bytes([h[8], h[9]]), 1);
    assert_eq!(u16::from_le_bytes([h[10], h[11]]), 80);
    assert_eq!(&h[72..80], &blake3::hash(&h[0..72]).as_bytes()[..8]);

    let mut prev = GENESIS_HASH;
    let mut off = SEGMENT_HEADER_LEN;
    for _ in 0..2 {
        let fh = &bytes[off..off + FRAME_HEADER_LEN];
        assert_eq!(&fh[0..4], b"CLFR");
        assert_eq!(&fh[36..40], &blake3::hash(&fh[0..36]).as_bytes()[..4]);
        let payload_len = u32::from_le_bytes(fh[4..8].try_into().unwrap()) as usize;
        let payload = &bytes[off + FRAME_HEADER_LEN..off + FRAME_HEADER_LEN + payload_len];
        let mut hasher = blake3::Hasher::new();
        hasher.update(&prev).update(fh).update(payload);
        let stored = &bytes[off + FRAME_HEADER_LEN + payload_len..off + FRAME_OVERHEAD + payload_len];
        assert_eq!(hasher.finalize().as_bytes(), stored);
        prev = stored.try_into().unwrap();
        off += FRAME_OVERHEAD + payload_len;
    }
    assert_eq!(off as u64, l.active_len);
    let f = &bytes[off..];
    assert_eq!(f.len(), FOOTER_LEN);
    assert_eq!(&f[0..8], b"CLOGEND\0");
    assert_eq!(u64::from_le_bytes(f[8..16].try_into().unwrap()), 4);
    assert_eq!(u64::from_le_bytes(f[16..24].try_into().unwrap()), 2);
    assert_eq!(u64::from_le_bytes(f[24..32].try_into().unwrap()), l.active_len);
    assert_eq!(&f[32..64], &prev);
    assert_eq!(&f[64..96], blake3::hash(&f[0..64]).as_bytes());
    assert_eq!(hex(&prev), SEG1_HEAD_HEX);
}

#[test]
fn worked_example_event_bytes() {
    assert_eq!(hex_bytes(&raw_events(&frame1_events())), FRAME1_RAW_HEX);
    assert_eq!(hex_bytes(&raw_events(&frame2_events())), FRAME2_RAW_HEX);
    // And the spec's bytes decode back to the events.
    assert_eq!(decode_events(&unhex(FRAME1_RAW_HEX), 2).unwrap(), frame1_events());
    assert_eq!(decode_events(&unhex(FRAME2_RAW_HEX), 2).unwrap(), frame2_events());
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn leb128(mut v: u128) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn zigzag(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

/// `raw` with the only occurrence of `old` replaced by `new`.
fn splice(raw: &[u8], old: &[u8], new: &[u8]) -> Vec<u8> {
    let at: Vec<usize> = raw.windows(old.len()).enumerate().filter(|(_, w)| *w == old).map(|(i, _)| i).collect();
    assert_eq!(at.len(), 1, "{} must occur once in {}", hex_bytes(old), hex_bytes(raw));
    [&raw[..at[0]], new, &raw[at[0] + old.len()..]].concat()
}

/// The decoding rules of format/segment.md, "Invalid payloads".
#[test]
fn invalid_payloads_are_rejected() {
    let raw = raw_events(&frame3_events());
    let err = |bytes: &[u8], expected: usize| decode_events(bytes, expected).expect_err("must not decode").to_string();
    assert_eq!(decode_events(&raw, 1).unwrap(), frame3_events());
    // Count mismatch with the frame header (the tags array is event_count bytes).
    assert!(decode_events(&raw, 0).is_err());
    assert!(decode_events(&raw, 2).is_err());
    // Unknown tag.
    let mut b = raw.clone();
    b[0] = 3;
    assert!(err(&b, 1).contains("unknown event tag 3"));
    // Symbol index outside the dictionary: tag, dict_len, "SKRUSDT", then index 0 → 1.
    let mut b = raw.clone();
    assert_eq!(b[10], 0);
    b[10] = 1;
    assert!(err(&b, 1).contains("outside the dictionary"));
    // A dictionary larger than the number of candles.
    let mut b = raw.clone();
    b[1] = 2;
    assert!(err(&b, 1).contains("dictionary"));
    // Unknown interval code.
    let mut b = raw.clone();
    assert_eq!(b[11], 8);
    b[11] = 16;
    assert!(err(&b, 1).contains("unknown interval code 16"));
    // Magnitudes outside [0, 10^38): low above min(open, close) by more than
    // it is, open = 10^38, volume = 10^38.
    let low = leb128(zigzag(33_800 - 33_500));
    let b = splice(&raw, &low, &leb128(zigzag(40_000)));
    assert!(err(&b, 1).contains("low: magnitude -6200 out of range"), "{}", err(&b, 1));
    let open = leb128(zigzag(33_800));
    let b = splice(&raw, &open, &leb128(zigzag(10i128.pow(38))));
    assert!(err(&b, 1).contains("open: magnitude"), "{}", err(&b, 1));
    let volume = leb128(110_200);
    let b = splice(&raw, &volume, &leb128(10u128.pow(38)));
    assert!(err(&b, 1).contains("decimal out of range"), "{}", err(&b, 1));
    // A decimal scale above 38 (the first head byte, open's, is scale 6).
    let heads = [6u8, 6, 6, 6, 0, 6, 0, 6];
    let b = splice(&raw, &heads, &[39, 6, 6, 6, 0, 6, 0, 6]);
    assert!(err(&b, 1).contains("decimal out of range"), "{}", err(&b, 1));
    // Unread trailing bytes, and every truncation.
    let b = [&raw[..], &[0]].concat();
    assert!(err(&b, 1).contains("bytes after the last event"));
    for cut in 0..raw.len() {
        assert!(decode_events(&raw[..cut], 1).is_err(), "cut at {cut}");
    }
    // A varint's 19th byte carries at most 2 bits (bits 126-127).
    let mut too_long = vec![0xffu8; 18];
    too_long.push(0x04);
    let b = splice(&raw, &volume, &too_long);
    assert!(err(&b, 1).contains("exceeds 128 bits"), "{}", err(&b, 1));
    let mut max = vec![0xffu8; 18];
    max.push(0x03);
    let b = splice(&raw, &volume, &max);
    assert!(err(&b, 1).contains("decimal out of range"), "{}", err(&b, 1));
    // A run body must be consumed exactly: frame 2's run with one more byte
    // inside its body_len.
    let raw2 = raw_events(&frame2_events());
    let run_at = raw2.len() - 129 - 2;
    assert_eq!(&raw2[run_at..run_at + 2], &[0x81, 0x01]);
    let b = [&raw2[..run_at], &[0x82, 0x01], &raw2[run_at + 2..], &[0]].concat();
    assert!(err(&b, 2).contains("unread bytes after run body"), "{}", err(&b, 2));
}

// ---------------------------------------------------------------------------
// (b) Each frozen vector decodes exactly as format/segment.md says.

#[test]
fn sealed_decodes_to_known_events_and_hashes() {
    let l = layout();
    for is_last in [true, false] {
        let (bytes, s) = scan("sealed.seg", 1, is_last, None);
        assert!(s.damage.is_empty(), "{:#?}", s.damage);
        let header = s.header.unwrap();
        assert_eq!(header, SegmentHeader { seq: 1, first_lsn: 1, base_hash: GENESIS_HASH, created_ms: SEG1_CREATED_MS });
        let head = from_hex(SEG1_HEAD_HEX);
        let footer = Footer { last_lsn: 4, frame_count: 2, footer_offset: l.active_len, head_hash: head };
        assert_eq!(s.end, SegmentEnd::Sealed(footer));
        assert_eq!(s.head_hash, head);
        assert_eq!(s.next_lsn, 5);
        assert_eq!(s.valid_end, l.active_len);
        assert_eq!(s.file_len, l.active_len + FOOTER_LEN as u64);

        let offsets: Vec<u64> = s.frames.iter().map(|f| f.offset).collect();
        assert_eq!(offsets, [SEGMENT_HEADER_LEN as u64, l.frame2_off]);
        assert_eq!(s.frames[0].hash, from_hex(FRAME1_HASH_HEX));
        assert_eq!(s.frames[1].hash, head);
        let h = |i: usize| s.frames[i].header;
        assert_eq!((h(0).first_lsn, h(0).event_count, h(0).commit_ms), (1, 2, FRAME1_COMMIT_MS));
        assert_eq!((h(1).first_lsn, h(1).event_count, h(1).commit_ms), (3, 2, FRAME2_COMMIT_MS));
        assert_eq!(h(0).frame_len(), l.frame1_len);
        assert_eq!(u64::from(h(0).raw_len), raw_events(&frame1_events()).len() as u64);

        assert_eq!(events_of(&bytes, &s), [frame1_events(), frame2_events()]);
    }
}

#[test]
fn active_decodes_to_the_same_frames_without_footer() {
    let l = layout();
    let (bytes, s) = scan("active.seg", 1, true, None);
    assert!(s.damage.is_empty(), "{:#?}", s.damage);
    assert_eq!(s.end, SegmentEnd::Open);
    assert_eq!(s.head_hash, from_hex(SEG1_HEAD_HEX));
    assert_eq!(s.next_lsn, 5);
    assert_eq!(s.valid_end, l.active_len);
    assert_eq!(events_of(&bytes, &s), [frame1_events(), frame2_events()]);
    // A segment without footer that is not the last one is damage.
    let (_, s) = scan("active.seg", 1, false, None);
    assert_eq!(s.end, SegmentEnd::Open);
    let dmg = only_damage(&s);
    assert_eq!((dmg.kind.as_str(), dmg.offset, dmg.lsn), ("unsealed", l.active_len, Some(5)));
}

#[test]
fn second_segment_continues_the_chain() {
    let (_, s1) = scan("sealed.seg", 1, false, None);
    assert!(s1.damage.is_empty());
    let expect = Some((s1.next_lsn, s1.head_hash));
    let (bytes, s) = scan("second.seg", 2, true, expect);
    assert!(s.damage.is_empty(), "{:#?}", s.damage);
    let header = s.header.unwrap();
    assert_eq!((header.seq, header.first_lsn, header.base_hash), (2, 5, from_hex(SEG1_HEAD_HEX)));
    assert_eq!(s.end, SegmentEnd::Open);
    assert_eq!(s.head_hash, from_hex(SEG2_HEAD_HEX));
    assert_eq!(s.next_lsn, 6);
    assert_eq!(events_of(&bytes, &s), [frame3_events()]);

    // The same file after a different predecessor: the chain and the LSNs break.
    let (_, s) = scan("second.seg", 2, true, Some((4, GENESIS_HASH)));
    let found: Vec<_> = s.damage.iter().map(|d| (d.kind.as_str(), d.offset, d.lsn)).collect();
    assert_eq!(found, [("lsn_gap", 24, Some(4)), ("chain_break", 32, Some(4))]);
    // Named as the wrong segment number.
    let (_, s) = scan("second.seg", 3, true, expect);
    let dmg = only_damage(&s);
    assert_eq!((dmg.kind.as_str(), dmg.offset, dmg.lsn), ("bad_header", 16, None));
}

#[test]
fn torn_tail_is_torn_on_the_last_segment_only() {
    let l = layout();
    let (bytes, s) = scan("torn_tail.seg", 1, true, None);
    assert!(s.damage.is_empty(), "{:#?}", s.damage);
    let torn_len = bytes.len() as u64 - l.active_len;
    let reason = format!("frame of {} bytes is cut short at {torn_len} bytes", frozen_frame3().len());
    assert!(
        matches!(&s.end, SegmentEnd::Torn { offset, len, reason: r } if *offset == l.active_len && *len == torn_len && *r == reason),
        "{:?}",
        s.end
    );
    assert_eq!(s.valid_end, l.active_len);
    assert_eq!(s.head_hash, from_hex(SEG1_HEAD_HEX));
    assert_eq!(s.next_lsn, 5);
    assert_eq!(s.frames.len(), 2);

    let (_, s) = scan("torn_tail.seg", 1, false, None);
    assert_eq!(s.end, SegmentEnd::Damaged);
    let dmg = only_damage(&s);
    assert_eq!((dmg.kind.as_str(), dmg.offset, dmg.lsn), ("truncated_frame", l.active_len, Some(5)));
}

#[test]
fn zero_tail_is_torn_on_the_last_segment_only() {
    let l = layout();
    let (_, s) = scan("zero_tail.seg", 1, true, None);
    assert!(s.damage.is_empty(), "{:#?}", s.damage);
    assert!(
        matches!(&s.end, SegmentEnd::Torn { offset, len, .. } if *offset == l.active_len && *len == ZERO_TAIL_LEN as u64),
        "{:?}",
        s.end
    );
    let (_, s) = scan("zero_tail.seg", 1, false, None);
    assert_eq!(s.end, SegmentEnd::Damaged);
    let dmg = only_damage(&s);
    assert_eq!((dmg.kind.as_str(), dmg.offset, dmg.lsn), ("trailing_bytes", l.active_len, Some(5)));
}

#[test]
fn flipped_payload_is_a_hash_mismatch_at_the_frame() {
    for is_last in [true, false] {
        let (bytes, s) = scan("flipped_payload.seg", 1, is_last, None);
        let dmg = only_damage(&s);
        assert_eq!((dmg.kind.as_str(), dmg.offset, dmg.lsn), ("hash_mismatch", SEGMENT_HEADER_LEN as u64, Some(1)));
        // The scan goes on from the stored hash: frame 2 and the footer still check out.
        assert_eq!(s.frames.len(), 2);
        assert_eq!(s.head_hash, from_hex(SEG1_HEAD_HEX));
        assert!(matches!(s.end, SegmentEnd::Sealed(_)), "{:?}", s.end);
        // The second frame still decodes.
        let mut dec = zstd::bulk::Decompressor::new().unwrap();
        let m = &s.frames[1];
        assert_eq!(decode_frame(&bytes[m.offset as usize..], m, &mut dec).unwrap(), frame2_events());
    }
}

#[test]
fn wrong_magic_is_a_bad_header() {
    for is_last in [true, false] {
        let (_, s) = scan("wrong_magic.seg", 1, is_last, None);
        assert_eq!(s.end, SegmentEnd::Damaged);
        assert!(s.header.is_none());
        let dmg = only_damage(&s);
        assert_eq!((dmg.kind.as_str(), dmg.offset, dmg.lsn), ("bad_header", 0, None));
        assert!(dmg.message.contains("wrong magic"), "{}", dmg.message);
    }
}

#[test]
fn future_version_is_refused_with_upgrade_hint() {
    for is_last in [true, false] {
        let (_, s) = scan("future_version.seg", 1, is_last, None);
        assert_eq!(s.end, SegmentEnd::Damaged);
        assert!(s.header.is_none());
        assert!(s.frames.is_empty(), "a reader must not guess at frames of an unknown version");
        let dmg = only_damage(&s);
        assert_eq!((dmg.kind.as_str(), dmg.offset, dmg.lsn), ("unsupported_version", 0, None));
        assert!(dmg.message.contains("version 3") && dmg.message.contains("upgrade candlelog"), "{}", dmg.message);
    }
}

#[test]
fn truncated_footer_is_torn_when_last_and_damage_otherwise() {
    let l = layout();
    let (_, s) = scan("truncated_footer.seg", 1, true, None);
    assert!(s.damage.is_empty(), "{:#?}", s.damage);
    assert!(
        matches!(&s.end, SegmentEnd::Torn { offset, len, reason } if *offset == l.active_len && *len == TRUNCATED_FOOTER_KEEP as u64 && reason == "footer truncated: 40 of 96 bytes"),
        "{:?}",
        s.end
    );
    assert_eq!(s.head_hash, from_hex(SEG1_HEAD_HEX));
    assert_eq!(s.next_lsn, 5);

    let (_, s) = scan("truncated_footer.seg", 1, false, None);
    assert_eq!(s.end, SegmentEnd::Damaged);
    let dmg = only_damage(&s);
    assert_eq!((dmg.kind.as_str(), dmg.offset, dmg.lsn), ("truncated_footer", l.active_len, Some(5)));
}

#[test]
fn zero_hash_tail_is_torn_on_the_last_segment_only() {
    let l = layout();
    let frame_len = frozen_frame3().len() as u64;
    let (bytes, s) = scan("zero_hash_tail.seg", 1, true, None);
    assert_eq!(bytes.len() as u64, l.active_len + frame_len);
    assert!(s.damage.is_empty(), "{:#?}", s.damage);
    assert!(
        matches!(&s.end, SegmentEnd::Torn { offset, len, reason } if *offset == l.active_len && *len == frame_len && reason.contains("never written")),
        "{:?}",
        s.end
    );
    assert_eq!((s.frames.len(), s.valid_end, s.next_lsn), (2, l.active_len, 5));
    assert_eq!(s.head_hash, from_hex(SEG1_HEAD_HEX));

    // Not the last segment: the frame is a hash mismatch (then the segment is unsealed).
    let (_, s) = scan("zero_hash_tail.seg", 1, false, None);
    let found: Vec<_> = s.damage.iter().map(|d| (d.kind.as_str(), d.offset)).collect();
    assert_eq!(found, [("hash_mismatch", l.active_len), ("unsealed", bytes.len() as u64)]);
    assert_eq!(s.damage[0].lsn, Some(5));

    // The rule needs a zero hash and only zeros after the frame; the payload
    // may hold anything. Built in memory from the real frame 3:
    let (_, active) = read_vector("active.seg");
    let frame = frozen_frame3();
    let hash_at = frame.len() - FRAME_HASH_LEN;
    let mut zero_hash = frame.clone();
    zero_hash[hash_at..].fill(0);
    for (what, tail, torn) in [
        ("payload intact, hash zero", zero_hash.clone(), true),
        ("hash zero, then zeros", [&zero_hash[..], &[0; 100]].concat(), true),
        ("hash zero, then a non-zero byte", [&zero_hash[..], &[0, 0, 1]].concat(), false),
        ("one hash byte non-zero", [&frame[..hash_at], &[0; 31], &[1]].concat(), false),
    ] {
        let bytes = [&active[..], &tail[..]].concat();
        let s = scan_segment(Path::new(SEG1), 1, &bytes, true, None);
        if torn {
            assert!(s.damage.is_empty(), "{what}: {:#?}", s.damage);
            assert!(matches!(&s.end, SegmentEnd::Torn { offset, .. } if *offset == l.active_len), "{what}: {:?}", s.end);
        } else {
            let d = &s.damage[0];
            assert_eq!((d.kind.as_str(), d.offset, d.lsn), ("hash_mismatch", l.active_len, Some(5)), "{what}");
        }
    }
}

#[test]
fn zero_check_tail_is_torn_on_the_last_segment_only() {
    let l = layout();
    let frame_len = frozen_frame3().len() as u64;
    let (bytes, s) = scan("zero_check_tail.seg", 1, true, None);
    assert_eq!(bytes.len() as u64, l.active_len + frame_len);
    assert!(s.damage.is_empty(), "{:#?}", s.damage);
    assert!(
        matches!(&s.end, SegmentEnd::Torn { offset, len, reason } if *offset == l.active_len && *len == frame_len && reason.contains("never written")),
        "{:?}",
        s.end
    );
    assert_eq!((s.frames.len(), s.valid_end, s.next_lsn), (2, l.active_len, 5));

    let (_, s) = scan("zero_check_tail.seg", 1, false, None);
    assert_eq!(s.end, SegmentEnd::Damaged);
    let dmg = only_damage(&s);
    assert_eq!((dmg.kind.as_str(), dmg.offset, dmg.lsn), ("bad_frame_header", l.active_len, Some(5)));

    // Variants built in memory from frame 3's header.
    let (_, active) = read_vector("active.seg");
    let frame = frozen_frame3();
    let keep = |n: usize, total: usize| {
        let mut t = frame[..n].to_vec();
        t.resize(total, 0);
        t
    };
    let mut damaged_check = frame[..FRAME_HEADER_LEN].to_vec();
    damaged_check[20] ^= 1; // header_check no longer matches, but is not zero
    let mut not_c = keep(ZERO_CHECK_KEEP, FRAME_HEADER_LEN);
    not_c[0] = b'X';
    for (what, tail, torn) in [
        ("only 'C' landed, 40 bytes", keep(1, FRAME_HEADER_LEN), true),
        ("magic and payload_len landed, whole frame long", keep(8, frame.len()), true),
        ("36 header bytes, then 1000 zeros", keep(ZERO_CHECK_KEEP, 1000), true),
        ("header check damaged, not zero", damaged_check, false),
        ("does not start with C", not_c, false),
        ("a non-zero byte after the header", [&keep(ZERO_CHECK_KEEP, 60)[..], &[1]].concat(), false),
    ] {
        let bytes = [&active[..], &tail[..]].concat();
        let s = scan_segment(Path::new(SEG1), 1, &bytes, true, None);
        if torn {
            assert!(s.damage.is_empty(), "{what}: {:#?}", s.damage);
            assert!(matches!(&s.end, SegmentEnd::Torn { offset, .. } if *offset == l.active_len), "{what}: {:?}", s.end);
        } else {
            let d = only_damage(&s);
            assert_eq!((d.kind.as_str(), d.offset, d.lsn), ("bad_frame_header", l.active_len, Some(5)), "{what}");
        }
    }
}

#[test]
fn segment_one_must_start_the_log() {
    // A non-genesis base hash: chain_break at the base_hash field, LSN 1;
    // the frames themselves check out.
    let (bytes, s) = scan("non_genesis_base.seg", 1, true, None);
    let dmg = only_damage(&s);
    assert_eq!((dmg.kind.as_str(), dmg.offset, dmg.lsn), ("chain_break", 32, Some(1)));
    assert_eq!(s.end, SegmentEnd::Open);
    assert_eq!(s.next_lsn, 3);
    assert_eq!(events_of(&bytes, &s), [frame1_events()]);
    // An explicit `expect` replaces the default of segment 1.
    let (_, s) = scan("non_genesis_base.seg", 1, true, Some((1, NON_GENESIS_BASE)));
    assert!(s.damage.is_empty(), "{:#?}", s.damage);

    // Segment 2 named as segment 1 (say, after segment 1 was deleted).
    let (_, s) = scan("second.seg", 1, true, None);
    let found: Vec<_> = s.damage.iter().map(|d| (d.kind.as_str(), d.offset, d.lsn)).collect();
    assert_eq!(found, [("bad_header", 16, None), ("lsn_gap", 24, Some(1)), ("chain_break", 32, Some(1))]);
}

#[test]
fn header_fields_out_of_range_are_damage() {
    // seq 0 or first_lsn 0: bad_header at 0, even with a valid header_check.
    for (seq, first_lsn) in [(0, 1), (1, 0)] {
        let h = SegmentHeader { seq, first_lsn, base_hash: GENESIS_HASH, created_ms: SEG1_CREATED_MS }.encode();
        let s = scan_segment(Path::new(SEG1), seq, &h, true, None);
        let dmg = only_damage(&s);
        assert_eq!((dmg.kind.as_str(), dmg.offset, dmg.lsn), ("bad_header", 0, None), "seq {seq} first_lsn {first_lsn}");
        assert!(s.header.is_none());
    }
    // A frame whose first_lsn + event_count overflows a u64.
    let fh = |first_lsn: u64, event_count: u32| {
        FrameHeader { payload_len: 0, first_lsn, event_count, raw_len: 0, commit_ms: 0, codec: 1, event_format: 1 }.encode()
    };
    assert!(FrameHeader::decode(&fh(u64::MAX, 1)).is_err());
    assert!(FrameHeader::decode(&fh(u64::MAX - 1, 2)).is_err());
    assert!(FrameHeader::decode(&fh(u64::MAX - 1, 1)).is_ok());
}

// ---------------------------------------------------------------------------
// (c) The writer truncates a torn tail on open, and only a torn tail.

fn log_dir_with(files: &[(&str, &[u8])]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    std::fs::create_dir(&log).unwrap();
    for (name, bytes) in files {
        std::fs::write(log.join(name), bytes).unwrap();
    }
    (tmp, log)
}

const SEG1: &str = "00000000000000000001.seg";
const SEG2: &str = "00000000000000000002.seg";

#[test]
fn writer_truncates_the_torn_tail_on_open() {
    let l = layout();
    let (_, torn) = read_vector("torn_tail.seg");
    let (_tmp, log) = log_dir_with(&[(SEG1, &torn)]);
    let path = log.join(SEG1);
    let (mut w, truncations) = LogWriter::open(&log, Default::default()).unwrap();
    assert_eq!(truncations.len(), 1, "{truncations:?}");
    assert_eq!(truncations[0].path, path);
    assert_eq!((truncations[0].offset, truncations[0].len), (l.active_len, torn.len() as u64 - l.active_len));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), l.active_len);
    assert_eq!(std::fs::read(&path).unwrap(), read_vector("active.seg").1);
    assert_eq!(w.head_lsn(), 4);
    assert_eq!(w.head_hash(), from_hex(SEG1_HEAD_HEX));

    // The next append continues the chain where the whole frames ended.
    let metas = w.append(&frame3_events()).unwrap();
    assert_eq!((metas[0].offset, metas[0].header.first_lsn), (l.active_len, 5));
    assert_eq!(w.head_lsn(), 5);
    drop(w);
    let bytes = std::fs::read(&path).unwrap();
    let s = scan_segment(&path, 1, &bytes, true, None);
    assert!(s.damage.is_empty(), "{:#?}", s.damage);
    assert_eq!((&s.end, s.next_lsn, s.frames.len()), (&SegmentEnd::Open, 6, 3));
    assert_eq!(events_of(&bytes, &s)[2], frame3_events());

    // Reopening finds nothing more to truncate.
    let (w, truncations) = LogWriter::open(&log, Default::default()).unwrap();
    assert!(truncations.is_empty(), "{truncations:?}");
    assert_eq!(w.head_lsn(), 5);
}

#[test]
fn writer_truncates_a_zero_tail_and_a_cut_footer_on_the_last_segment() {
    let l = layout();
    for name in ["zero_tail.seg", "truncated_footer.seg", "zero_hash_tail.seg", "zero_check_tail.seg"] {
        let (_, bytes) = read_vector(name);
        let (_tmp, log) = log_dir_with(&[(SEG1, &bytes)]);
        let (w, truncations) = LogWriter::open(&log, Default::default()).unwrap();
        assert_eq!(truncations.len(), 1, "{name}: {truncations:?}");
        assert_eq!(truncations[0].offset, l.active_len, "{name}");
        assert_eq!(std::fs::metadata(log.join(SEG1)).unwrap().len(), l.active_len, "{name}");
        assert_eq!((w.head_lsn(), w.head_hash()), (4, from_hex(SEG1_HEAD_HEX)), "{name}");
    }
}

#[test]
fn writer_refuses_to_open_damage() {
    let l = layout();
    for (name, offset) in [
        ("flipped_payload.seg", SEGMENT_HEADER_LEN as u64),
        ("wrong_magic.seg", 0),
        ("future_version.seg", 0),
        ("non_genesis_base.seg", 32),
    ] {
        let (_, bytes) = read_vector(name);
        let (_tmp, log) = log_dir_with(&[(SEG1, &bytes)]);
        let err = LogWriter::open(&log, Default::default()).err().unwrap_or_else(|| panic!("{name} must not open"));
        let msg = err.to_string();
        assert!(msg.contains(&format!("byte offset {offset}")), "{name}: {msg}");
        if name == "future_version.seg" {
            // Upgrade, not restore: a backup copy of the segment would not help.
            assert!(msg.contains("upgrade candlelog") && !msg.contains("restore"), "{msg}");
        } else {
            assert!(msg.contains("restore this segment from a backup"), "{name}: {msg}");
        }
        // Nothing was truncated or rewritten.
        assert_eq!(std::fs::read(log.join(SEG1)).unwrap(), bytes, "{name}");
    }
    // A cut footer followed by another segment is damage, not a torn tail.
    let (_, cut) = read_vector("truncated_footer.seg");
    let (_, second) = read_vector("second.seg");
    let (_tmp, log) = log_dir_with(&[(SEG1, &cut), (SEG2, &second)]);
    let err = LogWriter::open(&log, Default::default()).err().expect("a cut footer before another segment must not open");
    assert!(err.to_string().contains(SEG1), "{err}");
    assert_eq!(std::fs::read(log.join(SEG1)).unwrap().len() as u64, l.active_len + TRUNCATED_FOOTER_KEEP as u64);
}

#[test]
fn writer_opens_a_sealed_log_and_removes_a_half_created_segment() {
    let (_, sealed) = read_vector("sealed.seg");
    let (_, second) = read_vector("second.seg");
    // A clean two-segment log.
    let (_tmp, log) = log_dir_with(&[(SEG1, &sealed), (SEG2, &second)]);
    let (w, truncations) = LogWriter::open(&log, Default::default()).unwrap();
    assert!(truncations.is_empty());
    assert_eq!((w.head_lsn(), w.head_hash()), (5, from_hex(SEG2_HEAD_HEX)));

    // A crash while creating segment 2 left a file whose header never
    // landed: all zeros (any length), or shorter than the header and a
    // prefix of the magic. It is removed.
    let zeros = [0u8; 600];
    for stub in [&b""[..], &zeros[..79], &zeros[..80], &zeros[..], &b"CLOGS"[..], &second[..SEGMENT_HEADER_LEN - 1]] {
        let (_tmp, log) = log_dir_with(&[(SEG1, &sealed), (SEG2, stub)]);
        let (w, truncations) = LogWriter::open(&log, Default::default()).unwrap();
        assert_eq!(truncations.len(), 1, "{truncations:?}");
        assert_eq!((truncations[0].offset, truncations[0].len), (0, stub.len() as u64));
        assert!(!log.join(SEG2).exists());
        assert_eq!((w.head_lsn(), w.head_hash()), (4, from_hex(SEG1_HEAD_HEX)));
    }
    // Anything else is damage and stays: junk shorter than a header, or the
    // magic followed by zeros up to the header's length.
    let mut magic_then_zeros = b"CLOGSEG\0".to_vec();
    magic_then_zeros.resize(SEGMENT_HEADER_LEN, 0);
    for stub in [&b"junk"[..], &magic_then_zeros[..]] {
        let (_tmp, log) = log_dir_with(&[(SEG1, &sealed), (SEG2, stub)]);
        let err = LogWriter::open(&log, Default::default()).err().expect("must not open");
        assert!(err.to_string().contains(SEG2), "{err}");
        assert_eq!(std::fs::read(log.join(SEG2)).unwrap(), stub);
    }
}

#[test]
fn writer_checks_the_previous_segments_footer_offset() {
    // sealed.seg with a footer whose check is right but whose footer_offset
    // is not where it stands.
    let (_, sealed) = read_vector("sealed.seg");
    let (_, second) = read_vector("second.seg");
    let mut bad = sealed[..ACTIVE_LEN as usize].to_vec();
    let footer = Footer { last_lsn: 4, frame_count: 2, footer_offset: 0, head_hash: from_hex(SEG1_HEAD_HEX) };
    bad.extend_from_slice(&footer.encode());
    let (_tmp, log) = log_dir_with(&[(SEG1, &bad), (SEG2, &second)]);
    let err = LogWriter::open(&log, Default::default()).err().expect("a footer at the wrong offset must not open");
    let msg = err.to_string();
    assert!(msg.contains(SEG1) && msg.contains(&format!("byte offset {ACTIVE_LEN}")), "{msg}");
}

// ---------------------------------------------------------------------------
// (d) Event format 2: backup and drill runs (format/segment.md, "Event format 2").

#[test]
fn event_format_2_decodes_to_backup_and_drill_runs() {
    let (_, s1) = scan("sealed.seg", 1, false, None);
    for is_last in [true, false] {
        let (bytes, s) = scan("event_format_2.seg", 2, is_last, Some((s1.next_lsn, s1.head_hash)));
        assert!(s.damage.is_empty(), "{:#?}", s.damage);
        assert_eq!(bytes.len() as u64, EVENT_FORMAT_2_LEN);
        let head = from_hex(SEG2_SEALED_HEAD_HEX);
        let footer = Footer { last_lsn: 7, frame_count: 2, footer_offset: EVENT_FORMAT_2_LEN - FOOTER_LEN as u64, head_hash: head };
        assert_eq!(s.end, SegmentEnd::Sealed(footer));
        assert_eq!((s.head_hash, s.next_lsn), (head, 8));
        let frames: Vec<_> = s
            .frames
            .iter()
            .map(|f| (f.offset, f.header.first_lsn, f.header.event_count, f.header.event_format, f.header.commit_ms))
            .collect();
        assert_eq!(frames, [(SEGMENT_HEADER_LEN as u64, 5, 1, 1, FRAME3_COMMIT_MS), (FRAME4_OFFSET, 6, 2, 2, FRAME4_COMMIT_MS)]);
        // Frame 3 is byte for byte the frame of second.seg: a format-1 frame stays format 1.
        assert_eq!(&bytes[SEGMENT_HEADER_LEN..FRAME4_OFFSET as usize], &frozen_frame3()[..]);
        assert_eq!(events_of(&bytes, &s), [frame3_events(), frame4_events()]);
    }
}

#[test]
fn event_format_2_reencodes_to_the_same_bytes() {
    let (bytes, s) = scan("event_format_2.seg", 2, true, Some((5, from_hex(SEG1_HEAD_HEX))));
    let m = &s.frames[1];
    let frame = &bytes[m.offset as usize..(m.offset + m.header.frame_len()) as usize];
    // The frozen payload decompresses to the spec's bytes, which decode to the runs.
    let payload = &frame[FRAME_HEADER_LEN..FRAME_HEADER_LEN + m.header.payload_len as usize];
    let raw = zstd::bulk::decompress(payload, m.header.raw_len as usize).unwrap();
    assert_eq!(hex_bytes(&raw), FRAME4_RAW_HEX);
    let decoded = decode_events_format(&raw, 2, 2).unwrap();
    assert_eq!(decoded, frame4_events());
    // Encoding the decoded events again gives the same raw payload, and the
    // writer's choice of event format (the lowest that carries them) is 2.
    assert_eq!(raw_events(&decoded), raw);
    assert_eq!(required_format(&decoded), 2);
    // Compressed and framed after frame 3's hash: the same frame, hash included.
    let mut again = Vec::new();
    let h = push_frame_as_writer(&mut again, &s.frames[0].hash, 6, m.header.commit_ms, &decoded);
    assert_eq!(again, frame);
    assert_eq!(h, from_hex(SEG2_SEALED_HEAD_HEX));
    // Run kinds, codes and the outcome layout are those of event format 1.
    assert_eq!((RunKind::Backup.code(), RunKind::Drill.code()), (5, 6));
    assert_eq!(&raw[5..6], &[5], "first run body starts with kind 5 (backup)");
}

#[test]
fn event_format_2_runs_are_refused_in_a_format_1_frame() {
    let raw = unhex(FRAME4_RAW_HEX);
    // Read as event format 1, the payload is invalid (damage), never misread.
    let e = decode_events_format(&raw, 2, 1).unwrap_err().to_string();
    assert!(e.contains("run kind backup needs event format 2, the frame says 1"), "{e}");
    // The same frame stamped event_format 1 (header check and chain hash recomputed):
    // the header checks out, the payload does not decode.
    let (_, seg1_head) = active();
    let mut b = SegmentHeader { seq: 2, first_lsn: 5, base_hash: seg1_head, created_ms: SEG2_CREATED_MS }.encode().to_vec();
    let h3 = push_frame(&mut b, &seg1_head, 5, FRAME3_COMMIT_MS, &frame3_events());
    push_frame(&mut b, &h3, 6, FRAME4_COMMIT_MS, &frame4_events());
    let s = scan_segment(Path::new(SEG2), 2, &b, true, Some(ChainPos::new(4, seg1_head)));
    assert!(s.damage.is_empty(), "{:#?}", s.damage);
    let m = &s.frames[1];
    assert_eq!(m.header.event_format, 1);
    let mut dec = zstd::bulk::Decompressor::new().unwrap();
    let e = decode_frame(&b[m.offset as usize..], m, &mut dec).unwrap_err();
    assert!(e.contains("needs event format 2"), "{e}");
    // An event format above 6 is a bad frame header (3 is a loss frame).
    let fh = FrameHeader { payload_len: 0, first_lsn: 6, event_count: 2, raw_len: 0, commit_ms: 0, codec: 1, event_format: 7 };
    assert!(FrameHeader::decode(&fh.encode()).is_err());
    for format in [2, 3, 4, 5, 6] {
        let fh = FrameHeader { event_format: format, ..fh };
        assert!(FrameHeader::decode(&fh.encode()).is_ok());
    }
    // A loss frame's record is bounded: readers decode it while scanning.
    let fh = FrameHeader { event_format: 3, raw_len: (1 << 20) + 1, ..fh };
    assert!(FrameHeader::decode(&fh.encode()).is_err());
}

#[test]
fn writer_continues_a_log_ending_in_event_format_2() {
    let (_, sealed) = read_vector("sealed.seg");
    let (_, seg2) = read_vector("event_format_2.seg");
    let (_tmp, log) = log_dir_with(&[(SEG1, &sealed), (SEG2, &seg2)]);
    let (mut w, truncations) = LogWriter::open(&log, Default::default()).unwrap();
    assert!(truncations.is_empty(), "{truncations:?}");
    assert_eq!((w.head_lsn(), w.head_hash()), (7, from_hex(SEG2_SEALED_HEAD_HEX)));
    // A candle after the runs goes into a new segment, in a format-1 frame.
    let metas = w.append(&frame3_events()).unwrap();
    assert_eq!((metas[0].seq, metas[0].header.first_lsn, metas[0].header.event_format), (3, 8, 1));
    assert_eq!(std::fs::read(log.join(SEG2)).unwrap(), seg2, "a sealed segment never changes");
}

#[test]
fn event_format_4_decodes_to_a_gap_and_run_statuses() {
    let (bytes, s) = scan("event_format_4.seg", 3, true, Some((8, from_hex(SEG2_SEALED_HEAD_HEX))));
    assert!(s.damage.is_empty(), "{:#?}", s.damage);
    assert_eq!(s.next_lsn, 10);
    let frames: Vec<_> = s.frames.iter().map(|f| (f.header.first_lsn, f.header.event_count, f.header.event_format)).collect();
    assert_eq!(frames, [(8, 2, 4)]);
    assert_eq!(events_of(&bytes, &s), [frame5_events()]);
    // Read as an older format, the payload is refused, naming what needs format 4.
    let m = &s.frames[0];
    let payload = &bytes[m.offset as usize + FRAME_HEADER_LEN..][..m.header.payload_len as usize];
    let raw = zstd::bulk::decompress(payload, m.header.raw_len as usize).unwrap();
    let e = decode_events_format(&raw, 2, 2).unwrap_err().to_string();
    assert!(e.contains("needs event format 4, the frame says 2"), "{e}");
    assert_eq!(raw_events(&frame5_events()), raw);
    // Without the gap, the statuses alone need format 4; an ok-only sync run stays format 1.
    let Event::Run(run) = &frame5_events()[1] else { unreachable!() };
    assert_eq!(required_format(&[Event::Run(run.clone())]), 4);
    let ok_only = Run { outcomes: run.outcomes[..1].to_vec(), ..run.clone() };
    assert_eq!(required_format(&[Event::Run(ok_only)]), 1);
}

#[test]
fn event_format_5_decodes_to_a_service_run() {
    let (_, seg3) = read_vector("event_format_4.seg");
    let seg3_head =
        scan_segment(Path::new("event_format_4.seg"), 3, &seg3, true, Some(ChainPos::new(7, from_hex(SEG2_SEALED_HEAD_HEX)))).head_hash;
    let (bytes, s) = scan("event_format_5.seg", 4, true, Some((10, seg3_head)));
    assert!(s.damage.is_empty(), "{:#?}", s.damage);
    assert_eq!(s.next_lsn, 11);
    let frames: Vec<_> = s.frames.iter().map(|f| (f.header.first_lsn, f.header.event_count, f.header.event_format)).collect();
    assert_eq!(frames, [(10, 1, 5)]);
    assert_eq!(events_of(&bytes, &s), [frame6_events()]);
    let Event::Run(run) = &frame6_events()[0] else { unreachable!() };
    assert_eq!((run.kind.code(), run.kind.as_str()), (7, "service"));
    // Read as an older format, the payload is refused, naming what needs format 5.
    let m = &s.frames[0];
    let payload = &bytes[m.offset as usize + FRAME_HEADER_LEN..][..m.header.payload_len as usize];
    let raw = zstd::bulk::decompress(payload, m.header.raw_len as usize).unwrap();
    let e = decode_events_format(&raw, 1, 4).unwrap_err().to_string();
    assert!(e.contains("run kind service needs event format 5, the frame says 4"), "{e}");
    assert_eq!(raw_events(&frame6_events()), raw);
    assert_eq!(required_format(&frame6_events()), 5);
    // A build that reads formats up to 4 sees an unknown format in the frame header, never a
    // misread run: byte 33 of the frame header is the format.
    assert_eq!(bytes[m.offset as usize + 33], 5);
}

#[test]
fn event_format_6_decodes_to_an_anchor() {
    let (bytes, s) = scan("event_format_6.seg", 5, true, Some((11, event_format_5_head())));
    assert!(s.damage.is_empty(), "{:#?}", s.damage);
    assert_eq!(s.next_lsn, 12);
    let frames: Vec<_> = s.frames.iter().map(|f| (f.header.first_lsn, f.header.event_count, f.header.event_format)).collect();
    assert_eq!(frames, [(11, 1, 6)]);
    assert_eq!(events_of(&bytes, &s), [frame7_events()]);
    // Read as format 5, the payload is refused, naming what needs format 6.
    let m = &s.frames[0];
    let payload = &bytes[m.offset as usize + FRAME_HEADER_LEN..][..m.header.payload_len as usize];
    let raw = zstd::bulk::decompress(payload, m.header.raw_len as usize).unwrap();
    let e = decode_events_format(&raw, 1, 5).unwrap_err().to_string();
    assert!(e.contains("an anchor event needs event format 6, the frame says 5"), "{e}");
    assert_eq!(raw_events(&frame7_events()), raw);
    assert_eq!(required_format(&frame7_events()), 6);
    // A build that reads formats up to 5 sees an unknown format in the frame header (byte 33).
    assert_eq!(bytes[m.offset as usize + 33], 6);
    // The bulk-load reader skips the anchor: no candle rows, no error.
    let (mut dict, mut rows) = (Vec::new(), Vec::new());
    candlelog::event::rows::decode_candle_rows(&raw, 1, &mut dict, &mut rows).unwrap();
    assert!(rows.is_empty());
    // Cut short anywhere, it is an error, never a panic.
    for cut in 1..raw.len() {
        assert!(decode_events_format(&raw[..cut], 1, 6).is_err(), "cut at {cut}");
    }
}

/// This build (format 6) still reads a log ending in format 5, and a frame
/// mixing candles and an anchor.
#[test]
fn format_6_reader_reads_format_5_and_mixed_frames() {
    let (bytes, s) = scan("event_format_5.seg", 4, true, Some((10, event_format_4_and_head().1)));
    assert!(s.damage.is_empty(), "{:#?}", s.damage);
    assert_eq!(events_of(&bytes, &s), [frame6_events()]);
    let mut mixed = frame3_events();
    mixed.extend(frame7_events());
    let raw = raw_events(&mixed);
    assert_eq!(decode_events_format(&raw, mixed.len(), 6).unwrap(), mixed);
}

#[test]
fn writer_continues_a_log_ending_in_event_format_5() {
    let (_, sealed) = read_vector("sealed.seg");
    let (_, seg2) = read_vector("event_format_2.seg");
    let (_, seg3) = read_vector("event_format_4.seg");
    let (_, seg4) = read_vector("event_format_5.seg");
    let (seg3_name, seg4_name) = ("00000000000000000003.seg", "00000000000000000004.seg");
    let (_tmp, log) = log_dir_with(&[(SEG1, &sealed), (SEG2, &seg2), (seg3_name, &seg3), (seg4_name, &seg4)]);
    let (mut w, truncations) = LogWriter::open(&log, Default::default()).unwrap();
    assert!(truncations.is_empty(), "{truncations:?}");
    assert_eq!(w.head_lsn(), 10);
    let metas = w.append(&frame3_events()).unwrap();
    assert_eq!((metas[0].seq, metas[0].header.first_lsn, metas[0].header.event_format), (5, 11, 1));
}

#[test]
fn writer_continues_a_log_ending_in_event_format_4() {
    let (_, sealed) = read_vector("sealed.seg");
    let (_, seg2) = read_vector("event_format_2.seg");
    let (_, seg3) = read_vector("event_format_4.seg");
    let seg3_name = "00000000000000000003.seg";
    let (_tmp, log) = log_dir_with(&[(SEG1, &sealed), (SEG2, &seg2), (seg3_name, &seg3)]);
    let (mut w, truncations) = LogWriter::open(&log, Default::default()).unwrap();
    assert!(truncations.is_empty(), "{truncations:?}");
    assert_eq!(w.head_lsn(), 9);
    let metas = w.append(&frame3_events()).unwrap();
    assert_eq!((metas[0].seq, metas[0].header.first_lsn, metas[0].header.event_format), (4, 10, 1));
}

// ---------------------------------------------------------------------------
// (e) Loss frames: segment version 2 (format/segment.md, "Loss frames").

/// Offset of `loss.seg`'s footer (= 80 + the loss frame).
const LOSS_FOOTER_OFFSET: u64 = 304;
/// Raw payload of `loss.seg`'s loss frame (format/segment.md, "Loss frames").
const LOSS_RAW_HEX: &str = concat!(
    "03",                                                                       // tag 3: Loss
    "0500000000000000",                                                         // first_lsn 5
    "0500000000000000",                                                         // last_lsn 5
    "0200000000000000",                                                         // segment 2
    "806fc4addd7789e787b87576ca28f9b6c2e2e6a1be7615b10cba802a81ab97ca",         // before_hash: head of segment 1
    "ea6ab5b41f6cb67794cfbb0c23abc531a5d23179e6816081041198202853c1ea",         // resumed_hash: hash after frame 3
    "20d481e79b010000",                                                         // recorded_ms 1769115604000
    "24",                                                                       // reason: 36 bytes,
    "7365676d656e7420323a2062797465732038302e2e323138206172652064616d61676564", // "segment 2: bytes 80..218 are damaged"
    "01",                                                                       // 1 lost series
    "07534b5255534454",
    "08", // SKRUSDT, 4h
    "001c6fe69b010000",
    "001c6fe69b010000", // first_open = last_open = 1769097600000
);

#[test]
fn loss_segment_re_anchors_the_chain_on_its_recorded_loss() {
    let (_, s1) = scan("sealed.seg", 1, false, None);
    for is_last in [true, false] {
        let (bytes, s) = scan("loss.seg", 2, is_last, Some((s1.next_lsn, s1.head_hash)));
        assert!(s.damage.is_empty(), "{:#?}", s.damage);
        assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 2, "a segment holding a loss frame is version 2");
        let resumed = from_hex(SEG2_HEAD_HEX);
        let footer = Footer { last_lsn: 5, frame_count: 1, footer_offset: LOSS_FOOTER_OFFSET, head_hash: resumed };
        assert_eq!(s.end, SegmentEnd::Sealed(footer));
        // The chain after the loss is the hash the lost frame ended with: segment 3 of the
        // original log (and every projection that recorded LSN 5) still fits.
        assert_eq!((s.head_hash, s.next_lsn), (resumed, 6));
        let f = &s.frames[0];
        assert_eq!((f.offset, f.header.first_lsn, f.header.event_count, f.header.event_format), (80, 5, 1, EVENT_FORMAT_LOSS));
        assert_eq!(f.header.commit_ms, FRAME2_COMMIT_MS);
        assert_eq!(f.hash, resumed);
        assert_eq!(events_of(&bytes, &s), [vec![Event::Loss(loss5())]]);
        let payload = &bytes[80 + FRAME_HEADER_LEN..80 + FRAME_HEADER_LEN + f.header.payload_len as usize];
        let raw = zstd::bulk::decompress(payload, f.header.raw_len as usize).unwrap();
        assert_eq!(hex_bytes(&raw), LOSS_RAW_HEX);
        // The stored hash is blake3(before ‖ header ‖ payload), like any frame's.
        let end = 80 + f.header.frame_len() as usize;
        let mut h = blake3::Hasher::new();
        h.update(&s1.head_hash);
        h.update(&bytes[80..end - FRAME_HASH_LEN]);
        assert_eq!(h.finalize().as_bytes(), &bytes[end - FRAME_HASH_LEN..end]);
    }
}

#[test]
fn loss_frames_are_refused_where_the_format_does_not_allow_them() {
    let (_, s1) = scan("sealed.seg", 1, false, None);
    let expect = Some(ChainPos::new(4, s1.head_hash));
    let (_, good) = read_vector("loss.seg");
    // In a version-1 segment (header check recomputed): damage, never a re-anchor.
    let mut v1 = good.clone();
    v1[8..10].copy_from_slice(&1u16.to_le_bytes());
    let check = blake3::hash(&v1[0..72]);
    v1[72..80].copy_from_slice(&check.as_bytes()[0..8]);
    let s = scan_segment(Path::new(SEG2), 2, &v1, false, expect);
    assert_eq!(s.damage.first().map(|d| (d.kind.as_str(), d.offset)), Some(("bad_loss", 80)), "{:#?}", s.damage);
    // A flipped byte in the loss record is a hash mismatch like any frame's.
    let mut flipped = good.clone();
    flipped[80 + FRAME_HEADER_LEN + 3] ^= 0x01;
    let s = scan_segment(Path::new(SEG2), 2, &flipped, false, expect);
    assert_eq!(s.damage.first().map(|d| (d.kind.as_str(), d.offset)), Some(("hash_mismatch", 80)));
    // A loss record whose "before" hash is not the chain's (re-framed so the frame hash checks out).
    let header = SegmentHeader { seq: 2, first_lsn: 5, base_hash: s1.head_hash, created_ms: SEG2_CREATED_MS };
    let mut b = header.encode_version(SEGMENT_VERSION_LOSS).to_vec();
    let mut other = loss5();
    other.before_hash = [7; 32];
    let mut frame = Vec::new();
    encode_loss_frame(&mut frame, &other, FRAME2_COMMIT_MS).unwrap();
    // Chain the frame from the real head so only the record's claim is wrong.
    let fh = FrameHeader::decode(frame[..FRAME_HEADER_LEN].try_into().unwrap()).unwrap();
    let payload = frame[FRAME_HEADER_LEN..FRAME_HEADER_LEN + fh.payload_len as usize].to_vec();
    let raw = zstd::bulk::decompress(&payload, fh.raw_len as usize).unwrap();
    encode_frame_format(&mut b, &s1.head_hash, 5, 1, FRAME2_COMMIT_MS, &raw, &payload, EVENT_FORMAT_LOSS);
    let s = scan_segment(Path::new(SEG2), 2, &b, true, expect);
    assert_eq!(s.damage.first().map(|d| (d.kind.as_str(), d.offset)), Some(("bad_loss", 80)), "{:#?}", s.damage);
    // A writer never appends a loss.
    let (_, sealed) = read_vector("sealed.seg");
    let (_tmp, log) = log_dir_with(&[(SEG1, &sealed)]);
    let (mut w, _) = LogWriter::open(&log, Default::default()).unwrap();
    assert!(w.append(&[Event::Loss(loss5())]).is_err());
}

#[test]
fn salvage_of_a_damaged_segment_gives_the_loss_vector_s_chain() {
    let (_, sealed) = read_vector("sealed.seg");
    let (_, s1) = scan("sealed.seg", 1, false, None);
    // second.seg, sealed, with a payload byte of frame 3 flipped: nothing of it verifies.
    let mut seg2 = second();
    let footer = Footer { last_lsn: 5, frame_count: 1, footer_offset: seg2.len() as u64, head_hash: from_hex(SEG2_HEAD_HEX) };
    seg2.extend_from_slice(&footer.encode());
    seg2[80 + FRAME_HEADER_LEN + 5] ^= 0x01;
    let spec = SalvageSpec {
        seq: 2,
        start: ChainPos::new(4, s1.head_hash),
        end: None,
        recorded_ms: LOSS_RECORDED_MS,
        commit_floor: FRAME2_COMMIT_MS,
    };
    let out = salvage(Some(&seg2), spec, "segment 2", &loss5().series).unwrap();
    let [l] = &out.losses[..] else { panic!("{:?}", out.losses) };
    assert_eq!((l.first_lsn, l.last_lsn, l.before_hash, l.resumed_hash), (5, 5, s1.head_hash, from_hex(SEG2_HEAD_HEX)));
    let s = scan_segment(Path::new(SEG2), 2, &out.bytes, false, Some(ChainPos::new(4, s1.head_hash)));
    assert!(s.damage.is_empty(), "{:#?}", s.damage);
    assert_eq!((s.head_hash, s.next_lsn), (from_hex(SEG2_HEAD_HEX), 6));
    // The writer continues after it on the resumed chain.
    let (_tmp, log) = log_dir_with(&[(SEG1, &sealed), (SEG2, &out.bytes)]);
    let (mut w, _) = LogWriter::open(&log, Default::default()).unwrap();
    assert_eq!((w.head_lsn(), w.head_hash()), (5, from_hex(SEG2_HEAD_HEX)));
    let metas = w.append(&frame3_events()).unwrap();
    assert_eq!((metas[0].seq, metas[0].header.first_lsn), (3, 6));
}
