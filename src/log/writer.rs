//! The log writer: frames a batch of events, appends it to the active segment,
//! `fdatasync`s, and only then reports it committed. Rolls and seals segments.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::chain::{ChainCursor, ChainPos};
use super::error::LogError;
use super::frame::{FRAME_HEADER_LEN, MAX_RAW_LEN, encode_frame_format};
use super::fs::{LogFile, LogFs, StdFs};
use super::reader::{FrameMeta, SegmentEnd};
use super::segment::{FOOTER_LEN, Footer, GENESIS_HASH, SEGMENT_HEADER_LEN, SegmentHeader, parse_segment_name, segment_path};
use crate::event::{Event, Lsn, codec};

/// Most events one frame holds; larger batches become several frames of one commit.
pub const MAX_FRAME_EVENTS: usize = 65_536;

/// Tunables of the writer.
#[derive(Clone, Copy, Debug)]
pub struct WriterOptions {
    /// Roll to a new segment once the active one reaches this size.
    pub max_segment_bytes: u64,
    /// zstd level for frame payloads.
    pub zstd_level: i32,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { max_segment_bytes: 64 << 20, zstd_level: 3 }
    }
}

/// Half-written bytes removed from the tail of the active segment on open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
    pub reason: String,
}

/// A segment's entry in the catalog kept by the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub seq: u64,
    pub first_lsn: Lsn,
    /// `first_lsn − 1` while empty.
    pub last_lsn: Lsn,
    pub bytes: u64,
    pub sealed: bool,
    pub base_hash: [u8; 32],
    pub head_hash: [u8; 32],
}

struct Active {
    file: Box<dyn LogFile>,
    info: SegmentInfo,
    frames: u64,
}

/// The single writer of a log directory. The caller holds the data
/// directory's lock.
pub struct LogWriter {
    fs: Arc<dyn LogFs>,
    dir: PathBuf,
    opts: WriterOptions,
    active: Option<Active>,
    last_seq: u64,
    next_lsn: Lsn,
    head_hash: [u8; 32],
    last_commit_ms: i64,
    poisoned: Option<String>,
    /// The chain position after the last frame that was fdatasynced: a
    /// failed append falls back to it, so a poisoned writer never reports
    /// frames as committed that its failed append only encoded.
    synced: ChainPos,
    compressor: zstd::bulk::Compressor<'static>,
    /// Segments whose catalog entry changed since the last `take_catalog`.
    changed: Vec<SegmentInfo>,
}

impl LogWriter {
    /// Opens (creating if needed) the log in `dir`, truncating a torn tail.
    pub fn open(dir: &Path, opts: WriterOptions) -> Result<(LogWriter, Vec<Truncation>), LogError> {
        LogWriter::open_with(Arc::new(StdFs), dir, opts)
    }

    /// [`LogWriter::open`] over a given file layer (tests run it over a
    /// simulated disk, `src/log/sim_fs.rs`).
    pub fn open_with(fs: Arc<dyn LogFs>, dir: &Path, opts: WriterOptions) -> Result<(LogWriter, Vec<Truncation>), LogError> {
        fs.create_dir(dir).map_err(|e| LogError::io("create directory", dir, e))?;
        let compressor = zstd::bulk::Compressor::new(opts.zstd_level).map_err(|e| LogError::io("zstd init", dir, e))?;
        let mut w = LogWriter {
            fs,
            dir: dir.to_path_buf(),
            opts,
            active: None,
            last_seq: 0,
            next_lsn: 1,
            head_hash: GENESIS_HASH,
            last_commit_ms: 0,
            poisoned: None,
            synced: ChainPos::GENESIS,
            compressor,
            changed: Vec::new(),
        };
        let fs = &*w.fs;
        let mut truncations = Vec::new();
        let (mut segments, temps) = list_log(fs, dir)?;
        // A crash while rolling can leave the new segment under its temporary
        // name: it holds a header and nothing else.
        for tmp in &temps {
            tracing::info!(file = %tmp.display(), "removing a segment file whose creation did not complete");
            fs.remove(tmp).map_err(|e| LogError::io("remove", tmp, e))?;
        }
        if !temps.is_empty() {
            fs.sync_dir(dir).map_err(|e| LogError::io("fsync directory", dir, e))?;
        }
        let mut last_data = None;
        // A crash while creating a segment can leave a file shorter than its header.
        // Only the last segment can be half-created: every earlier one was sealed first.
        if let Some((_, path)) = segments.last() {
            let data = fs.read(path).map_err(|e| LogError::io("read", path, e))?;
            if super::segment::is_half_created(&data) {
                truncations.push(Truncation {
                    path: path.clone(),
                    offset: 0,
                    len: data.len() as u64,
                    reason: "segment file created but its header never completed".into(),
                });
                fs.remove(path).map_err(|e| LogError::io("remove", path, e))?;
                fs.sync_dir(dir).map_err(|e| LogError::io("fsync directory", dir, e))?;
                segments.pop();
            } else {
                last_data = Some(data);
            }
        }
        let Some((seq, path)) = segments.last().cloned() else {
            return Ok((w, truncations));
        };
        // The chain's rules (src/log/chain.rs) from the previous segment's footer; the
        // first segment of a log is checked against genesis, or trusted as the start of
        // a log whose older history was pruned (its base is checked by the readers).
        let cursor = match segments.len().checked_sub(2).and_then(|i| segments.get(i)) {
            Some((prev_seq, prev)) => ChainCursor::new(prev_seq + 1, previous_footer(fs, prev)?),
            None => ChainCursor::anywhere(),
        };
        let data = match last_data {
            Some(d) => d,
            None => fs.read(&path).map_err(|e| LogError::io("read", &path, e))?,
        };
        let checked = cursor.check(&path, seq, &data, true);
        if let Some(d) = checked.damage.into_iter().next() {
            return Err(d.into_error());
        }
        let scan = checked.scan;
        let header = scan.header.ok_or_else(|| LogError::Corrupt {
            path: path.clone(),
            offset: 0,
            lsn: None,
            message: "segment header unreadable".into(),
            hint: super::error::HINT_RESTORE,
        })?;
        w.last_seq = seq;
        w.next_lsn = scan.next_lsn;
        w.head_hash = scan.head_hash;
        w.synced = ChainPos::new(w.next_lsn - 1, w.head_hash);
        w.last_commit_ms = scan.frames.last().map_or(0, |f| f.header.commit_ms);
        let info = SegmentInfo {
            seq,
            first_lsn: header.first_lsn,
            last_lsn: scan.next_lsn - 1,
            bytes: scan.valid_end,
            sealed: false,
            base_hash: header.base_hash,
            head_hash: scan.head_hash,
        };
        match scan.end {
            SegmentEnd::Sealed(_) => {}
            SegmentEnd::Open | SegmentEnd::Torn { .. } => {
                let mut file = fs.open_append(&path).map_err(|e| LogError::io("open", &path, e))?;
                if let SegmentEnd::Torn { offset, len, reason } = scan.end {
                    file.set_len(offset).map_err(|e| LogError::io("truncate", &path, e))?;
                    file.sync_all().map_err(|e| LogError::io("fsync", &path, e))?;
                    tracing::warn!(segment = %path.display(), offset, len, "truncated torn tail: {reason}");
                    truncations.push(Truncation { path: path.clone(), offset, len, reason });
                }
                w.active = Some(Active { file, info, frames: scan.frames.len() as u64 });
            }
            SegmentEnd::Damaged => unreachable_damaged(&path)?,
        }
        Ok((w, truncations))
    }

    pub fn head_lsn(&self) -> Lsn {
        self.next_lsn - 1
    }
    pub fn head_hash(&self) -> [u8; 32] {
        self.head_hash
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `events` as one or more frames (split below the frame size
    /// limit) and `fdatasync`s once: a group commit. Returns the frames only
    /// after they are durable.
    pub fn append(&mut self, events: &[Event]) -> Result<Vec<FrameMeta>, LogError> {
        if let Some(cause) = &self.poisoned {
            return Err(LogError::Poisoned { cause: cause.clone(), last_committed: self.head_lsn() });
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let result = self.append_inner(events);
        if let Err(e) = &result {
            // An unknown amount reached the file: refuse further appends; the
            // next open truncates whatever is torn.
            self.poisoned = Some(e.to_string());
            (self.next_lsn, self.head_hash) = (self.synced.next_lsn(), self.synced.hash);
        }
        result
    }

    fn append_inner(&mut self, events: &[Event]) -> Result<Vec<FrameMeta>, LogError> {
        if events.iter().any(|e| matches!(e, Event::Loss(_))) {
            // A loss record replaces lost frames in place (ops::recover); it is never appended.
            return Err(LogError::io("append", &self.dir, std::io::Error::other("a loss record cannot be appended")));
        }
        let now = now_ms().max(self.last_commit_ms);
        let mut metas = Vec::new();
        let mut buf = Vec::new();
        let mut raw = Vec::with_capacity(64 * 1024);
        let mut i = 0;
        let mut chunk = MAX_FRAME_EVENTS;
        while i < events.len() {
            raw.clear();
            let first = i;
            let end = (i + chunk).min(events.len());
            codec::encode_events(&mut raw, &events[first..end]);
            if raw.len() > MAX_RAW_LEN {
                if end - first > 1 {
                    chunk = (end - first) / 2;
                    continue;
                }
                return Err(LogError::FrameTooLarge { what: "encoded event", size: raw.len(), max: MAX_RAW_LEN });
            }
            i = end;
            let payload = self.compressor.compress(&raw).map_err(|e| LogError::io("zstd compress", &self.dir, e))?;
            let needs_roll = match &self.active {
                None => true,
                Some(a) => a.frames > 0 && a.info.bytes + buf.len() as u64 >= self.opts.max_segment_bytes,
            };
            if needs_roll {
                self.flush(&mut buf)?;
                self.roll()?;
            }
            let active =
                self.active.as_mut().ok_or_else(|| LogError::io("append", &self.dir, std::io::Error::other("no active segment")))?;
            let offset = active.info.bytes + buf.len() as u64;
            let count = (i - first) as u32;
            let format = codec::required_format(&events[first..i]);
            let (header, hash) = encode_frame_format(&mut buf, &self.head_hash, self.next_lsn, count, now, &raw, &payload, format);
            metas.push(FrameMeta { seq: active.info.seq, offset, header, hash });
            self.head_hash = hash;
            self.next_lsn += u64::from(count);
        }
        self.flush(&mut buf)?;
        self.last_commit_ms = now;
        Ok(metas)
    }

    /// Writes buffered frames to the active segment and `fdatasync`s them.
    fn flush(&mut self, buf: &mut Vec<u8>) -> Result<(), LogError> {
        if buf.is_empty() {
            return Ok(());
        }
        let Some(active) = self.active.as_mut() else { return Ok(()) };
        let path = segment_path(&self.dir, active.info.seq);
        active.file.append(buf).map_err(|e| LogError::io("write", &path, e))?;
        active.file.sync_data().map_err(|e| LogError::io("fdatasync", &path, e))?;
        let frames = count_frames(buf);
        active.info.bytes += buf.len() as u64;
        active.frames += frames;
        active.info.last_lsn = self.next_lsn - 1;
        active.info.head_hash = self.head_hash;
        self.changed.push(active.info);
        self.synced = ChainPos::new(self.next_lsn - 1, self.head_hash);
        buf.clear();
        Ok(())
    }

    /// Seals the active segment (if it holds frames) and opens a new one.
    fn roll(&mut self) -> Result<(), LogError> {
        self.seal()?;
        let seq = self.last_seq + 1;
        let path = segment_path(&self.dir, seq);
        let header = SegmentHeader { seq, first_lsn: self.next_lsn, base_hash: self.head_hash, created_ms: now_ms() };
        if self.fs.file_len(&path).is_ok() {
            let exists = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "the next segment already exists");
            return Err(LogError::io("create", &path, exists));
        }
        // The header is written and fsynced under a temporary name, then
        // renamed: the segment's name never holds a header a power cut tore
        // (a torn header followed by zeros would be damage, format/segment.md).
        let tmp = temp_segment_path(&self.dir, seq);
        let mut file = self.fs.create(&tmp).map_err(|e| LogError::io("create", &tmp, e))?;
        file.append(&header.encode()).map_err(|e| LogError::io("write", &tmp, e))?;
        file.sync_all().map_err(|e| LogError::io("fsync", &tmp, e))?;
        self.fs.rename(&tmp, &path).map_err(|e| LogError::io("rename", &tmp, e))?;
        // The new name must be durable before any frame in the file is reported committed.
        self.fs.sync_dir(&self.dir).map_err(|e| LogError::io("fsync directory", &self.dir, e))?;
        let info = SegmentInfo {
            seq,
            first_lsn: self.next_lsn,
            last_lsn: self.next_lsn - 1,
            bytes: SEGMENT_HEADER_LEN as u64,
            sealed: false,
            base_hash: self.head_hash,
            head_hash: self.head_hash,
        };
        self.changed.push(info);
        self.active = Some(Active { file, info, frames: 0 });
        self.last_seq = seq;
        tracing::debug!(segment = seq, first_lsn = self.next_lsn, "created segment");
        Ok(())
    }

    /// Writes the footer of the active segment so it never changes again. The
    /// next append starts a new segment. An empty active segment stays open.
    pub fn seal(&mut self) -> Result<Option<SegmentInfo>, LogError> {
        if let Some(cause) = &self.poisoned {
            return Err(LogError::Poisoned { cause: cause.clone(), last_committed: self.head_lsn() });
        }
        let Some(active) = self.active.as_mut() else { return Ok(None) };
        if active.frames == 0 {
            return Ok(None);
        }
        let path = segment_path(&self.dir, active.info.seq);
        let footer =
            Footer { last_lsn: self.next_lsn - 1, frame_count: active.frames, footer_offset: active.info.bytes, head_hash: self.head_hash };
        let res = active.file.append(&footer.encode()).and_then(|_| active.file.sync_data());
        if let Err(e) = res {
            self.poisoned = Some(format!("sealing {}: {e}", path.display()));
            return Err(LogError::io("seal", &path, e));
        }
        active.info.bytes += FOOTER_LEN as u64;
        active.info.sealed = true;
        let info = active.info;
        self.changed.push(info);
        self.active = None;
        tracing::debug!(segment = info.seq, last_lsn = info.last_lsn, "sealed segment");
        Ok(Some(info))
    }

    /// Catalog entries changed since the last call, oldest first.
    pub fn take_catalog(&mut self) -> Vec<SegmentInfo> {
        std::mem::take(&mut self.changed)
    }
}

fn count_frames(buf: &[u8]) -> u64 {
    let mut pos = 0usize;
    let mut n = 0;
    while let Some(h) = buf.get(pos..pos + FRAME_HEADER_LEN) {
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        pos += super::frame::FRAME_OVERHEAD + len;
        n += 1;
    }
    n
}

/// Segment numbers and paths, in log order.
type Segments = Vec<(u64, PathBuf)>;

/// The segments in `dir`, in log order, and the temporary files of segments
/// whose creation did not complete.
fn list_log(fs: &dyn LogFs, dir: &Path) -> Result<(Segments, Vec<PathBuf>), LogError> {
    let names = fs.list(dir).map_err(|e| LogError::io("list", dir, e))?;
    let mut segments: Segments = names.iter().filter_map(|name| parse_segment_name(name).map(|seq| (seq, dir.join(name)))).collect();
    segments.sort();
    let temps = names.iter().filter(|name| is_temp_segment_name(name)).map(|name| dir.join(name)).collect();
    Ok((segments, temps))
}

/// Where segment `seq` is created before it gets its name: `.<name>.tmp`,
/// hidden and not a segment name, so readers never see it.
fn temp_segment_path(dir: &Path, seq: u64) -> PathBuf {
    let path = segment_path(dir, seq);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    dir.join(format!(".{name}.tmp"))
}

fn is_temp_segment_name(name: &str) -> bool {
    name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")).and_then(parse_segment_name).is_some()
}

/// Where the segment after `path` must start: its footer's end on the chain.
fn previous_footer(fs: &dyn LogFs, path: &Path) -> Result<ChainPos, LogError> {
    let len = fs.file_len(path).map_err(|e| LogError::io("stat", path, e))?;
    let start = len.saturating_sub(FOOTER_LEN as u64);
    let tail = fs.read_at(path, start, FOOTER_LEN).map_err(|e| LogError::io("read footer", path, e))?;
    let footer = Footer::decode(&tail).filter(|f| f.footer_offset == start);
    match footer.map(|f| ChainPos::new(f.last_lsn, f.head_hash)) {
        Some(next) => Ok(next),
        None => Err(LogError::Corrupt {
            path: path.to_path_buf(),
            offset: start,
            lsn: None,
            message: "segment before the active one has no valid footer".into(),
            hint: super::error::HINT_RESTORE,
        }),
    }
}

fn unreachable_damaged(path: &Path) -> Result<(), LogError> {
    Err(LogError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        lsn: None,
        message: "segment is damaged".into(),
        hint: super::error::HINT_RESTORE,
    })
}

pub(crate) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
