//! `dump`: frames and events of segments, for inspection (raft-engine's `ctl dump`).

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::log::{SegmentEnd, decode_frame, scan_segment};
use crate::projection::hex;

/// Writes one line per segment, frame and (with `events`) event to `out`:
/// human text, or JSON lines when `json`.
pub fn dump(segment_paths: &[std::path::PathBuf], events: bool, json: bool, out: &mut dyn Write) -> Result<()> {
    let mut dec = zstd::bulk::Decompressor::new().map_err(|e| Error::io("zstd init", "", e))?;
    for path in segment_paths {
        let data = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
        let seq = seq_of(path);
        let scan = scan_segment(path, seq, &data, true, None);
        let w = |out: &mut dyn Write, s: String| out.write_all(s.as_bytes()).map_err(|e| Error::io("write", "stdout", e));
        match scan.header {
            Some(h) if json => w(
                out,
                format!(
                    "{}\n",
                    json!({"segment": path.display().to_string(), "seq": h.seq, "first_lsn": h.first_lsn, "base_hash": hex(&h.base_hash), "created_ms": h.created_ms, "bytes": data.len()})
                ),
            )?,
            Some(h) => w(
                out,
                format!(
                    "segment {} seq={} first_lsn={} base_hash={} created_ms={} bytes={}\n",
                    path.display(),
                    h.seq,
                    h.first_lsn,
                    hex(&h.base_hash),
                    h.created_ms,
                    data.len()
                ),
            )?,
            None => w(out, format!("segment {}: header unreadable\n", path.display()))?,
        }
        for meta in &scan.frames {
            let h = meta.header;
            if json {
                w(
                    out,
                    format!(
                        "{}\n",
                        json!({"frame": meta.offset, "first_lsn": h.first_lsn, "last_lsn": h.last_lsn(), "events": h.event_count, "event_format": h.event_format, "commit_ms": h.commit_ms, "payload_len": h.payload_len, "raw_len": h.raw_len, "hash": hex(&meta.hash)})
                    ),
                )?;
            } else {
                w(
                    out,
                    format!(
                        "  frame @{} lsn={}..={} events={} format={} commit_ms={} payload={}B raw={}B hash={}\n",
                        meta.offset,
                        h.first_lsn,
                        h.last_lsn(),
                        h.event_count,
                        h.event_format,
                        h.commit_ms,
                        h.payload_len,
                        h.raw_len,
                        hex(&meta.hash)
                    ),
                )?;
            }
            if !events {
                continue;
            }
            let frame = data.get(meta.offset as usize..).unwrap_or(&[]);
            match decode_frame(frame, meta, &mut dec) {
                Ok(evs) => {
                    for (k, e) in evs.iter().enumerate() {
                        w(out, event_line(h.first_lsn + k as u64, e, json))?;
                    }
                }
                Err(m) => w(out, format!("    undecodable payload: {m}\n"))?,
            }
        }
        let tail = |out: &mut dyn Write, text: String, value: serde_json::Value| {
            w(out, if json { format!("{value}\n") } else { format!("  {text}\n") })
        };
        for d in &scan.damage {
            let lsn = d.lsn.map(|l| format!(" (LSN {l})")).unwrap_or_default();
            tail(
                out,
                format!("DAMAGE {} at offset {}{lsn}: {}", d.kind, d.offset, d.message),
                json!({"damage": d.kind, "offset": d.offset, "lsn": d.lsn, "message": d.message}),
            )?;
        }
        match &scan.end {
            SegmentEnd::Sealed(f) => tail(
                out,
                format!("footer last_lsn={} frames={} head_hash={}", f.last_lsn, f.frame_count, hex(&f.head_hash)),
                json!({"footer": f.footer_offset, "last_lsn": f.last_lsn, "frames": f.frame_count, "head_hash": hex(&f.head_hash)}),
            )?,
            SegmentEnd::Torn { offset, len, reason } => tail(
                out,
                format!("torn tail at offset {offset}: {len} bytes ({reason})"),
                json!({"torn_tail": offset, "len": len, "reason": reason}),
            )?,
            SegmentEnd::Open => tail(out, "(active: no footer)".into(), json!({"active": true}))?,
            SegmentEnd::Damaged => {}
        }
    }
    Ok(())
}

fn event_line(lsn: u64, e: &Event, json: bool) -> String {
    match (e, json) {
        (Event::Candle(c), false) => format!(
            "    {lsn} candle {} {} open_time={} close_time={} o={} h={} l={} c={} v={} qv={} trades={} tbv={} tbqv={}\n",
            c.symbol,
            c.interval,
            c.open_time,
            c.close_time,
            c.open,
            c.high,
            c.low,
            c.close,
            c.volume,
            c.quote_volume,
            c.trades,
            c.taker_buy_volume,
            c.taker_buy_quote_volume
        ),
        (Event::Candle(c), true) => format!(
            "{}\n",
            json!({"lsn": lsn, "candle": {"symbol": c.symbol.as_str(), "interval": c.interval.as_str(), "open_time": c.open_time, "close_time": c.close_time,
                "open": c.open.to_string(), "high": c.high.to_string(), "low": c.low.to_string(), "close": c.close.to_string(), "volume": c.volume.to_string(),
                "quote_volume": c.quote_volume.to_string(), "trades": c.trades, "taker_buy_volume": c.taker_buy_volume.to_string(), "taker_buy_quote_volume": c.taker_buy_quote_volume.to_string()}})
        ),
        (Event::Run(r), false) => format!(
            "    {lsn} run {} id={} started_ms={} ended_ms={} outcomes={}\n",
            r.kind.as_str(),
            r.id,
            r.started_ms,
            r.ended_ms,
            r.outcomes.len()
        ),
        (Event::Run(r), true) => format!(
            "{}\n",
            json!({"lsn": lsn, "run": {"kind": r.kind.as_str(), "id": r.id, "started_ms": r.started_ms, "ended_ms": r.ended_ms,
                "outcomes": r.outcomes.iter().map(|o| json!({"unit": o.unit, "interval": o.interval.map(|i| i.as_str()), "status": o.status.as_str(), "appended": o.appended, "revisions": o.revisions, "message": o.message})).collect::<Vec<_>>()}})
        ),
        (Event::Loss(l), false) => format!(
            "    {lsn} loss LSN {}..={} segment={} recorded_ms={} series={} reason={:?}\n",
            l.first_lsn,
            l.last_lsn,
            l.segment,
            l.recorded_ms,
            l.series.len(),
            l.reason
        ),
        (Event::Loss(l), true) => format!(
            "{}\n",
            json!({"lsn": lsn, "loss": {"first_lsn": l.first_lsn, "last_lsn": l.last_lsn, "segment": l.segment, "before_hash": hex(&l.before_hash),
                "resumed_hash": hex(&l.resumed_hash), "recorded_ms": l.recorded_ms, "reason": l.reason,
                "series": l.series.iter().map(|s| json!({"symbol": s.symbol.as_str(), "interval": s.interval.as_str(), "first_open": s.first_open, "last_open": s.last_open})).collect::<Vec<_>>()}})
        ),
        (Event::Gap(g), false) => {
            format!("    {lsn} gap {} {} first_open={} last_open={}\n", g.symbol, g.interval, g.first_open, g.last_open)
        }
        (Event::Gap(g), true) => format!(
            "{}\n",
            json!({"lsn": lsn, "gap": {"symbol": g.symbol.as_str(), "interval": g.interval.as_str(), "first_open": g.first_open, "last_open": g.last_open}})
        ),
        (Event::Anchor(a), false) => format!(
            "    {lsn} anchor snapshot LSN {} head={} raw_bytes={} raw_blake3={} checks={} tables={} series={}\n",
            a.lsn,
            hex(&a.head_hash),
            a.raw_bytes,
            hex(&a.raw_blake3),
            a.checks_str(),
            a.tables.len(),
            a.series.len()
        ),
        (Event::Anchor(a), true) => format!(
            "{}\n",
            json!({"lsn": lsn, "anchor": {"lsn": a.lsn, "head_hash": hex(&a.head_hash), "raw_bytes": a.raw_bytes, "raw_blake3": hex(&a.raw_blake3),
                "checks": a.checks, "tables": a.tables.iter().map(|t| json!({"table": t.interval.table(), "rows": t.rows, "digest": hex(&t.digest)})).collect::<Vec<_>>(),
                "series": a.series.len()}})
        ),
    }
}

fn seq_of(path: &Path) -> u64 {
    path.file_name().and_then(|n| n.to_str()).and_then(crate::log::segment::parse_segment_name).unwrap_or(0)
}
