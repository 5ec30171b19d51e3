//! A simulated disk for the log's crash tests (redb's crash backend,
//! raft-engine's failpoints): the real writer runs over it through
//! [`LogFs`], and a test cuts the power at any operation and looks at what a
//! reboot would find.
//!
//! Per file it keeps the **live** bytes (what reads see, the page cache) and
//! the **durable** bytes (what is on the platter); per directory the live and
//! the durable entries. A write changes live bytes; `sync_data`/`sync_all`
//! make a file's bytes durable; a created, renamed or removed entry is durable
//! only after its directory is fsynced — fsyncing a new file does not make
//! its name durable (POSIX promises no more; ext4 often does more, which is
//! why a real `kill -9` never finds these bugs). [`SimFs::crash`] builds the
//! disk after a power cut: unsynced bytes dropped, kept, or the last write
//! torn after any byte (the rest lost, or zeros where the file grew but its
//! data never landed); unsynced entries dropped or kept.

use std::collections::BTreeMap;
use std::io::{Error, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::fs::{LogFile, LogFs};

/// One state-changing operation, as recorded in [`SimFs::trace`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    CreateDir(PathBuf),
    Create(PathBuf),
    Write { path: PathBuf, offset: u64, len: usize },
    SetLen { path: PathBuf, len: u64 },
    SyncData(PathBuf),
    SyncAll(PathBuf),
    Rename { from: PathBuf, to: PathBuf },
    Remove(PathBuf),
    SyncDir(PathBuf),
}

/// Bytes appended to a file and not yet synced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tail {
    pub path: PathBuf,
    /// Where they start in the file (its durable length).
    pub offset: u64,
    pub bytes: Vec<u8>,
}

/// What happens to file bytes that were written but not synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bytes {
    /// All lost: every file is what its last successful sync left.
    Drop,
    /// All kept: the kernel happened to write everything back.
    Keep,
    /// The last write's file keeps `keep` of its unsynced appended bytes;
    /// with `zero_rest` the file keeps its live length and the bytes after
    /// those are zeros (its size reached the disk, its data did not). Other
    /// files lose their unsynced bytes.
    Torn { keep: usize, zero_rest: bool },
}

/// What happens to directory entries created, renamed or removed since the
/// directory's last fsync. Changes reach the disk in the order they were
/// made (a journaling file system's metadata), so a crash keeps a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entries {
    Drop,
    Keep,
    /// The first `n` unsynced changes of each directory survive.
    First(usize),
}

#[derive(Clone, Debug, Default)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
    /// The name it was last given (for the trace).
    path: PathBuf,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Dir {
    live: BTreeMap<String, usize>,
    durable: BTreeMap<String, usize>,
    /// Changes since the last fsync, oldest first: `durable` plus these is `live`.
    pending: Vec<Change>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Change {
    Insert(String, usize),
    Remove(String),
    Rename(String, String),
}

impl Dir {
    fn change(&mut self, c: Change) {
        apply(&mut self.live, &c);
        self.pending.push(c);
    }
}

fn apply(entries: &mut BTreeMap<String, usize>, c: &Change) {
    match c {
        Change::Insert(name, ino) => {
            entries.insert(name.clone(), *ino);
        }
        Change::Remove(name) => {
            entries.remove(name);
        }
        Change::Rename(from, to) => {
            if let Some(ino) = entries.remove(from) {
                entries.insert(to.clone(), ino);
            }
        }
    }
}

#[derive(Debug, Default)]
struct State {
    inodes: Vec<Inode>,
    dirs: BTreeMap<PathBuf, Dir>,
    trace: Vec<Op>,
    power_cut_after: Option<usize>,
    writes: usize,
    file_syncs: usize,
    dir_syncs: usize,
    fail_write: Option<(usize, usize)>,
    fail_sync: Option<usize>,
    fail_dir_sync: Option<usize>,
    ignore_dir_sync: bool,
    last_write: Option<usize>,
}

/// The simulated disk. Clones share it (the writer holds one, the test another).
#[derive(Clone, Debug, Default)]
pub struct SimFs(Arc<Mutex<State>>);

impl SimFs {
    pub fn new() -> SimFs {
        SimFs::default()
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The power goes off after `n` more state-changing operations in all
    /// (counted from the disk's creation): every later one fails.
    pub fn power_cut_after(&self, n: usize) {
        self.st().power_cut_after = Some(n);
    }

    /// The `n`-th write (1-based) fails with ENOSPC after writing `partial` of its bytes.
    pub fn fail_write(&self, n: usize, partial: usize) {
        self.st().fail_write = Some((n, partial));
    }

    /// The `n`-th file `sync_data`/`sync_all` (1-based) fails with EIO; nothing becomes durable.
    pub fn fail_sync(&self, n: usize) {
        self.st().fail_sync = Some(n);
    }

    /// The `n`-th directory fsync (1-based) fails with EIO.
    pub fn fail_dir_sync(&self, n: usize) {
        self.st().fail_dir_sync = Some(n);
    }

    /// Directory fsyncs succeed but make nothing durable: a writer that
    /// forgot them (to show that the tests would catch it).
    pub fn ignore_dir_sync(&self) {
        self.st().ignore_dir_sync = true;
    }

    /// State-changing operations so far (failed ones included).
    pub fn ops(&self) -> usize {
        self.st().trace.len()
    }

    pub fn trace(&self) -> Vec<Op> {
        self.st().trace.clone()
    }

    /// Live files of `dir`, by name.
    pub fn files(&self, dir: &Path) -> BTreeMap<String, Vec<u8>> {
        let st = self.st();
        let Some(d) = st.dirs.get(dir) else { return BTreeMap::new() };
        d.live.iter().map(|(name, &ino)| (name.clone(), st.inodes[ino].live.clone())).collect()
    }

    /// The unsynced bytes appended to the file of the last write (the range
    /// of `keep` in [`Bytes::Torn`]); `None` when that file has nothing
    /// unsynced or was not only appended to since its last sync.
    pub fn unsynced_tail(&self) -> Option<Tail> {
        let st = self.st();
        let inode = &st.inodes[st.last_write?];
        let bytes = appended(inode).filter(|b| !b.is_empty())?.to_vec();
        Some(Tail { path: inode.path.clone(), offset: inode.durable.len() as u64, bytes })
    }

    /// The most directory changes not yet durable in any one directory
    /// (the range of `n` in [`Entries::First`]).
    pub fn unsynced_entries(&self) -> usize {
        self.st().dirs.values().map(|d| d.pending.len()).max().unwrap_or(0)
    }

    /// The disk after a power cut now, as the next boot finds it: a new
    /// disk whose live and durable state are both what survived.
    pub fn crash(&self, bytes: Bytes, entries: Entries) -> SimFs {
        let st = self.st();
        let mut out = State::default();
        let mut renumber: BTreeMap<usize, usize> = BTreeMap::new();
        for (path, dir) in &st.dirs {
            let kept_changes = match entries {
                Entries::Drop => 0,
                Entries::Keep => dir.pending.len(),
                Entries::First(n) => n.min(dir.pending.len()),
            };
            let mut kept = dir.durable.clone();
            for c in &dir.pending[..kept_changes] {
                apply(&mut kept, c);
            }
            let mut new_dir = Dir::default();
            for (name, &ino) in &kept {
                let new_ino = *renumber.entry(ino).or_insert_with(|| {
                    let old = &st.inodes[ino];
                    let content = surviving(old, bytes, st.last_write == Some(ino));
                    out.inodes.push(Inode { live: content.clone(), durable: content, path: path.join(name) });
                    out.inodes.len() - 1
                });
                new_dir.live.insert(name.clone(), new_ino);
            }
            new_dir.durable = new_dir.live.clone();
            out.dirs.insert(path.clone(), new_dir);
        }
        SimFs(Arc::new(Mutex::new(out)))
    }
}

/// The bytes appended since the last sync, when the file was only appended to.
fn appended(inode: &Inode) -> Option<&[u8]> {
    inode.live.strip_prefix(inode.durable.as_slice())
}

fn surviving(inode: &Inode, bytes: Bytes, last_written: bool) -> Vec<u8> {
    match bytes {
        Bytes::Drop => inode.durable.clone(),
        Bytes::Keep => inode.live.clone(),
        Bytes::Torn { keep, zero_rest } => {
            let Some(extra) = appended(inode).filter(|_| last_written) else { return inode.durable.clone() };
            let mut out = inode.durable.clone();
            out.extend_from_slice(&extra[..keep.min(extra.len())]);
            if zero_rest {
                out.resize(inode.live.len(), 0);
            }
            out
        }
    }
}

fn not_found(path: &Path) -> Error {
    Error::new(ErrorKind::NotFound, format!("{} does not exist on the simulated disk", path.display()))
}

fn eio() -> Error {
    Error::from_raw_os_error(5)
}

fn enospc() -> Error {
    Error::from_raw_os_error(28)
}

fn split(path: &Path) -> (PathBuf, String) {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    (dir, name)
}

impl State {
    /// Records an operation, or refuses it once the power is off.
    fn begin(&mut self, op: Op) -> std::io::Result<()> {
        if self.power_cut_after.is_some_and(|n| self.trace.len() >= n) {
            return Err(Error::other("simulated power cut: the disk is gone"));
        }
        self.trace.push(op);
        Ok(())
    }

    fn lookup(&self, path: &Path) -> std::io::Result<usize> {
        let (dir, name) = split(path);
        self.dirs.get(&dir).and_then(|d| d.live.get(&name)).copied().ok_or_else(|| not_found(path))
    }

    fn dir_mut(&mut self, dir: &Path) -> std::io::Result<&mut Dir> {
        self.dirs.get_mut(dir).ok_or_else(|| not_found(dir))
    }
}

impl LogFs for SimFs {
    fn create_dir(&self, dir: &Path) -> std::io::Result<()> {
        let mut st = self.st();
        if st.dirs.contains_key(dir) {
            return Ok(());
        }
        st.begin(Op::CreateDir(dir.to_path_buf()))?;
        // Durable on return, as the trait promises (the parents are not modelled).
        st.dirs.insert(dir.to_path_buf(), Dir::default());
        Ok(())
    }

    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        Ok(self.st().dirs.get(dir).map(|d| d.live.keys().cloned().collect()).unwrap_or_default())
    }

    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        let st = self.st();
        Ok(st.inodes[st.lookup(path)?].live.clone())
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let st = self.st();
        let live = &st.inodes[st.lookup(path)?].live;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(live.len());
        Ok(live[start..(start.saturating_add(len)).min(live.len())].to_vec())
    }

    fn file_len(&self, path: &Path) -> std::io::Result<u64> {
        let st = self.st();
        Ok(st.inodes[st.lookup(path)?].live.len() as u64)
    }

    fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn LogFile>> {
        let inode = self.st().lookup(path)?;
        Ok(Box::new(SimFile { fs: self.clone(), inode }))
    }

    fn create(&self, path: &Path) -> std::io::Result<Box<dyn LogFile>> {
        let mut st = self.st();
        st.begin(Op::Create(path.to_path_buf()))?;
        let (dir, name) = split(path);
        let existing = st.dir_mut(&dir)?.live.get(&name).copied();
        let inode = match existing {
            Some(ino) => {
                st.inodes[ino].live.clear();
                ino
            }
            None => {
                st.inodes.push(Inode { path: path.to_path_buf(), ..Inode::default() });
                let ino = st.inodes.len() - 1;
                st.dir_mut(&dir)?.change(Change::Insert(name, ino));
                ino
            }
        };
        Ok(Box::new(SimFile { fs: self.clone(), inode }))
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        let mut st = self.st();
        st.begin(Op::Rename { from: from.to_path_buf(), to: to.to_path_buf() })?;
        let ino = st.lookup(from)?;
        let ((from_dir, from_name), (to_dir, to_name)) = (split(from), split(to));
        if from_dir != to_dir {
            return Err(Error::new(ErrorKind::Unsupported, "the simulated disk renames within one directory only"));
        }
        st.dir_mut(&to_dir)?.change(Change::Rename(from_name, to_name));
        st.inodes[ino].path = to.to_path_buf();
        Ok(())
    }

    fn remove(&self, path: &Path) -> std::io::Result<()> {
        let mut st = self.st();
        st.begin(Op::Remove(path.to_path_buf()))?;
        st.lookup(path)?;
        let (dir, name) = split(path);
        st.dir_mut(&dir)?.change(Change::Remove(name));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        let mut st = self.st();
        st.begin(Op::SyncDir(dir.to_path_buf()))?;
        st.dir_syncs += 1;
        if st.fail_dir_sync == Some(st.dir_syncs) {
            return Err(eio());
        }
        let ignore = st.ignore_dir_sync;
        let d = st.dir_mut(dir)?;
        if !ignore {
            d.durable = d.live.clone();
            d.pending.clear();
        }
        Ok(())
    }
}

struct SimFile {
    fs: SimFs,
    inode: usize,
}

impl SimFile {
    fn sync(&mut self, op: Op) -> std::io::Result<()> {
        let mut st = self.fs.st();
        st.begin(op)?;
        st.file_syncs += 1;
        if st.fail_sync == Some(st.file_syncs) {
            // Linux may drop the dirty pages and report the error once
            // (fsyncgate): nothing becomes durable, the live bytes stay.
            return Err(eio());
        }
        let inode = &mut st.inodes[self.inode];
        inode.durable = inode.live.clone();
        Ok(())
    }
}

impl LogFile for SimFile {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut st = self.fs.st();
        let inode = &st.inodes[self.inode];
        let op = Op::Write { path: inode.path.clone(), offset: inode.live.len() as u64, len: bytes.len() };
        st.begin(op)?;
        st.writes += 1;
        st.last_write = Some(self.inode);
        let fail = st.fail_write.filter(|&(n, _)| n == st.writes);
        let live = &mut st.inodes[self.inode].live;
        match fail {
            Some((_, partial)) => {
                live.extend_from_slice(&bytes[..partial.min(bytes.len())]);
                Err(enospc())
            }
            None => {
                live.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        let mut st = self.fs.st();
        let path = st.inodes[self.inode].path.clone();
        st.begin(Op::SetLen { path, len })?;
        st.inodes[self.inode].live.resize(usize::try_from(len).map_err(Error::other)?, 0);
        Ok(())
    }

    fn sync_data(&mut self) -> std::io::Result<()> {
        let path = self.fs.st().inodes[self.inode].path.clone();
        self.sync(Op::SyncData(path))
    }

    fn sync_all(&mut self) -> std::io::Result<()> {
        let path = self.fs.st().inodes[self.inode].path.clone();
        self.sync(Op::SyncAll(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        PathBuf::from("/sim/log")
    }

    fn disk() -> SimFs {
        let fs = SimFs::new();
        fs.create_dir(&dir()).unwrap();
        fs
    }

    fn content(fs: &SimFs, name: &str) -> Option<Vec<u8>> {
        fs.files(&dir()).get(name).cloned()
    }

    #[test]
    fn bytes_are_durable_only_after_sync_and_names_only_after_the_directory_sync() {
        let fs = disk();
        let mut f = fs.create(&dir().join("a")).unwrap();
        f.append(b"hello").unwrap();
        f.sync_data().unwrap();
        // The file's bytes are durable, its name is not.
        assert_eq!(content(&fs.crash(Bytes::Drop, Entries::Drop), "a"), None);
        assert_eq!(content(&fs.crash(Bytes::Drop, Entries::Keep), "a"), Some(b"hello".to_vec()));
        fs.sync_dir(&dir()).unwrap();
        f.append(b" world").unwrap();
        assert_eq!(content(&fs.crash(Bytes::Drop, Entries::Drop), "a"), Some(b"hello".to_vec()));
        assert_eq!(content(&fs.crash(Bytes::Keep, Entries::Drop), "a"), Some(b"hello world".to_vec()));
        assert_eq!(fs.unsynced_tail(), Some(Tail { path: dir().join("a"), offset: 5, bytes: b" world".to_vec() }));
        let torn = |keep, zero_rest| content(&fs.crash(Bytes::Torn { keep, zero_rest }, Entries::Drop), "a").unwrap();
        assert_eq!(torn(2, false), b"hello w");
        assert_eq!(torn(2, true), b"hello w\0\0\0\0");
        assert_eq!(torn(0, true), b"hello\0\0\0\0\0\0");
        assert_eq!(torn(9, false), b"hello world");
        f.sync_all().unwrap();
        assert_eq!(fs.unsynced_tail(), None);
        // The crashed disk is a new disk: the old one goes on.
        let after = fs.crash(Bytes::Drop, Entries::Drop);
        f.append(b"!").unwrap();
        assert_eq!(content(&after, "a"), Some(b"hello world".to_vec()));
    }

    #[test]
    fn renames_and_removals_wait_for_the_directory_sync() {
        let fs = disk();
        let mut f = fs.create(&dir().join(".tmp")).unwrap();
        f.append(b"x").unwrap();
        f.sync_all().unwrap();
        fs.sync_dir(&dir()).unwrap();
        fs.rename(&dir().join(".tmp"), &dir().join("b")).unwrap();
        let before: Vec<_> = fs.crash(Bytes::Drop, Entries::Drop).files(&dir()).into_keys().collect();
        assert_eq!(before, [".tmp"]);
        fs.sync_dir(&dir()).unwrap();
        fs.remove(&dir().join("b")).unwrap();
        assert_eq!(content(&fs.crash(Bytes::Drop, Entries::Drop), "b"), Some(b"x".to_vec()));
        assert_eq!(content(&fs.crash(Bytes::Drop, Entries::Keep), "b"), None);
        assert_eq!(fs.unsynced_entries(), 1);
        // Changes survive in order: a prefix of them.
        fs.create(&dir().join("c")).unwrap();
        let names = |n| fs.crash(Bytes::Drop, Entries::First(n)).files(&dir()).into_keys().collect::<Vec<_>>();
        assert_eq!((names(0), names(1), names(2)), (vec!["b".to_string()], vec![], vec!["c".to_string()]));
        // A directory fsync that is ignored leaves the entries as they were.
        fs.ignore_dir_sync();
        fs.sync_dir(&dir()).unwrap();
        assert_eq!(fs.unsynced_entries(), 2);
    }

    #[test]
    fn failpoints_and_the_power_cut() {
        let fs = disk();
        fs.fail_write(2, 3);
        fs.fail_sync(2);
        let mut f = fs.create(&dir().join("a")).unwrap();
        f.append(b"one").unwrap();
        f.sync_data().unwrap();
        let err = f.append(b"twotwo").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28), "{err}");
        assert_eq!(content(&fs, "a"), Some(b"onetwo".to_vec()));
        let err = f.sync_data().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(5), "{err}");
        assert_eq!(content(&fs.crash(Bytes::Drop, Entries::Keep), "a"), Some(b"one".to_vec()));
        fs.fail_dir_sync(1);
        assert_eq!(fs.sync_dir(&dir()).unwrap_err().raw_os_error(), Some(5));
        assert_eq!(content(&fs.crash(Bytes::Drop, Entries::Drop), "a"), None);
        fs.sync_dir(&dir()).unwrap();
        let n = fs.ops();
        fs.power_cut_after(n + 1);
        f.append(b"3").unwrap();
        assert!(f.sync_data().is_err());
        assert!(fs.remove(&dir().join("a")).is_err());
        assert_eq!(fs.ops(), n + 1);
        assert_eq!(fs.trace().last(), Some(&Op::Write { path: dir().join("a"), offset: 6, len: 1 }));
        assert_eq!(content(&fs.crash(Bytes::Drop, Entries::Drop), "a"), Some(b"one".to_vec()));
    }
}
