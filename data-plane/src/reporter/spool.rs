//! The reporter's queue of unacknowledged usage records, optionally backed by append-only
//! segment files.
//!
//! Records get increasing sequence numbers and live in segments of consecutive records. The
//! newest segment is open: new records are appended to it (and to its file,
//! `usage-<id>.seg`, each record a length-delimited protobuf `UsageRecord`). A segment is sealed
//! when it is full, and it is removed (with its file) once every record in it is acknowledged.
//! At start the segment files are read back, oldest first; a torn record at the end of a file
//! (a crash in the middle of a write) ends that file.
//!
//! The queue is bounded: when it holds more than `max_records` unacknowledged records, whole
//! segments are dropped, oldest first, and counted.
//!
//! This type does no I/O itself: mutations return [`IoJob`]s, which the reporter runs on the
//! blocking pool in order ([`run_jobs`]).

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use prost::Message;
use tollgate_proto::usage::v1::UsageRecord;

use crate::source::{create_private_dir, sync_dir};

const SEGMENT_PREFIX: &str = "usage-";
const SEGMENT_SUFFIX: &str = ".seg";

/// File work produced by the spool, run in order on the blocking pool.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum IoJob {
    Append { path: PathBuf, bytes: Vec<u8> },
    Sync { path: PathBuf },
    SyncDir { dir: PathBuf },
    Remove { path: PathBuf },
}

#[derive(Debug)]
struct Segment {
    id: u64,
    first_seq: u64,
    records: Vec<UsageRecord>,
    acked: Vec<bool>,
    unacked: usize,
    sealed: bool,
    path: Option<PathBuf>,
}

impl Segment {
    fn end_seq(&self) -> u64 {
        self.first_seq + self.records.len() as u64
    }
}

/// What [`Spool::open`] found on disk.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub records: usize,
    pub segments: usize,
    /// Records dropped because the files held more than the bound.
    pub dropped: u64,
}

#[derive(Debug)]
pub(crate) struct Spool {
    dir: Option<PathBuf>,
    segments: VecDeque<Segment>,
    next_segment_id: u64,
    next_seq: u64,
    segment_max: usize,
    max_records: usize,
    unacked: usize,
    /// Unacknowledged records at or after `cursor` (not yet sent on the current stream).
    unsent: usize,
    cursor: u64,
    dirty: Vec<PathBuf>,
    dir_dirty: bool,
}

impl Spool {
    /// An empty spool; `dir: None` keeps records in memory only.
    pub(crate) fn new(dir: Option<PathBuf>, max_records: usize) -> Spool {
        let max_records = max_records.max(1);
        Spool {
            dir,
            segments: VecDeque::new(),
            next_segment_id: 1,
            next_seq: 0,
            // Small enough that dropping one segment stays a small part of the bound.
            segment_max: (max_records / 4).clamp(1, 8192),
            max_records,
            unacked: 0,
            unsent: 0,
            cursor: 0,
            dirty: Vec::new(),
            dir_dirty: false,
        }
    }

    /// Opens (creating) the spool directory and loads the segments in it. Blocking.
    pub(crate) fn open(dir: &Path, max_records: usize) -> io::Result<(Spool, Loaded)> {
        create_private_dir(dir)?;
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = name
                .strip_prefix(SEGMENT_PREFIX)
                .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
                .and_then(|n| n.parse::<u64>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let mut spool = Spool::new(Some(dir.to_owned()), max_records);
        let mut loaded = Loaded::default();
        for id in ids {
            let path = dir.join(segment_name(id));
            spool.next_segment_id = spool.next_segment_id.max(id + 1);
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable usage spool segment skipped");
                    continue;
                }
            };
            let records = decode_records(&bytes, &path);
            if records.is_empty() {
                let _ = fs::remove_file(&path);
                continue;
            }
            let n = records.len();
            spool.segments.push_back(Segment {
                id,
                first_seq: spool.next_seq,
                acked: vec![false; n],
                unacked: n,
                records,
                sealed: true,
                path: Some(path),
            });
            spool.next_seq += n as u64;
            spool.unacked += n;
            spool.unsent += n;
            loaded.records += n;
            loaded.segments += 1;
        }
        let (dropped, jobs) = spool.enforce_bound();
        loaded.dropped = dropped;
        run_jobs(jobs)?;
        Ok((spool, loaded))
    }

    pub(crate) fn unacked(&self) -> usize {
        self.unacked
    }

    pub(crate) fn unsent(&self) -> usize {
        self.unsent
    }

    /// Appends records. Returns the file work to do and how many old records were dropped to
    /// stay within the bound.
    pub(crate) fn append(&mut self, records: Vec<UsageRecord>) -> (Vec<IoJob>, u64) {
        let mut jobs = Vec::new();
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let open = self
                .segments
                .back()
                .is_some_and(|s| !s.sealed && s.records.len() < self.segment_max);
            if !open {
                if let Some(last) = self.segments.back_mut() {
                    last.sealed = true;
                }
                let id = self.next_segment_id;
                self.next_segment_id += 1;
                let path = self.dir.as_ref().map(|d| d.join(segment_name(id)));
                if path.is_some() {
                    self.dir_dirty = true;
                }
                self.segments.push_back(Segment {
                    id,
                    first_seq: self.next_seq,
                    records: Vec::new(),
                    acked: Vec::new(),
                    unacked: 0,
                    sealed: false,
                    path,
                });
            }
            let seg = self.segments.back_mut().expect("an open segment");
            let room = self.segment_max - seg.records.len();
            let mut bytes = Vec::new();
            let mut n = 0;
            for r in records.by_ref().take(room) {
                if seg.path.is_some() {
                    r.encode_length_delimited(&mut bytes)
                        .expect("a Vec grows as needed");
                }
                seg.records.push(r);
                seg.acked.push(false);
                n += 1;
            }
            seg.unacked += n;
            self.next_seq += n as u64;
            self.unacked += n;
            self.unsent += n;
            if let Some(path) = &seg.path {
                if !self.dirty.contains(path) {
                    self.dirty.push(path.clone());
                }
                jobs.push(IoJob::Append {
                    path: path.clone(),
                    bytes,
                });
            }
        }
        let (dropped, drop_jobs) = self.enforce_bound();
        jobs.extend(drop_jobs);
        (jobs, dropped)
    }

    /// Drops the oldest segments while more than `max_records` records are unacknowledged.
    fn enforce_bound(&mut self) -> (u64, Vec<IoJob>) {
        let mut dropped = 0u64;
        let mut jobs = Vec::new();
        while self.unacked > self.max_records {
            let Some(seg) = self.segments.pop_front() else {
                break;
            };
            let unsent = (0..seg.records.len())
                .filter(|&i| !seg.acked[i] && seg.first_seq + i as u64 >= self.cursor)
                .count();
            self.unacked -= seg.unacked;
            self.unsent -= unsent;
            dropped += seg.unacked as u64;
            jobs.extend(self.forget_file(seg));
        }
        (dropped, jobs)
    }

    fn forget_file(&mut self, seg: Segment) -> Option<IoJob> {
        tracing::trace!(segment = seg.id, "usage spool segment released");
        let path = seg.path?;
        self.dirty.retain(|p| *p != path);
        Some(IoJob::Remove { path })
    }

    /// The next batch of up to `max` records not yet sent on this stream, holding at most
    /// `max_content` bytes of recorded bodies (or one record, however large): the range of
    /// sequence numbers it covers (acknowledge it with [`Spool::ack`]) and the records.
    pub(crate) fn next_batch(
        &mut self,
        max: usize,
        max_content: usize,
    ) -> Option<(Range<u64>, Vec<UsageRecord>)> {
        if self.unsent == 0 || max == 0 {
            return None;
        }
        let start = self
            .segments
            .partition_point(|s| s.end_seq() <= self.cursor);
        let mut out = Vec::new();
        let mut first = None;
        let mut last = 0;
        let mut content = 0usize;
        'segments: for seg in self.segments.range(start..) {
            let from = usize::try_from(self.cursor.saturating_sub(seg.first_seq)).unwrap_or(0);
            for i in from..seg.records.len() {
                if out.len() == max {
                    break 'segments;
                }
                if seg.acked[i] {
                    continue;
                }
                let len = crate::usage::record_content_len(&seg.records[i]);
                if !out.is_empty() && content + len > max_content {
                    break 'segments;
                }
                content += len;
                let seq = seg.first_seq + i as u64;
                first.get_or_insert(seq);
                last = seq;
                out.push(seg.records[i].clone());
            }
        }
        let Some(first) = first else {
            self.unsent = 0;
            return None;
        };
        self.cursor = last + 1;
        self.unsent -= out.len();
        Some((first..last + 1, out))
    }

    /// Marks the records of `range` acknowledged and removes segments that are now fully
    /// acknowledged. Returns how many records were newly acknowledged and the file work.
    pub(crate) fn ack(&mut self, range: Range<u64>) -> (usize, Vec<IoJob>) {
        let mut n = 0;
        let start = self
            .segments
            .partition_point(|s| s.end_seq() <= range.start);
        for seg in self.segments.range_mut(start..) {
            if seg.first_seq >= range.end {
                break;
            }
            let lo = (range.start.max(seg.first_seq) - seg.first_seq) as usize;
            let hi = (range.end.min(seg.end_seq()) - seg.first_seq) as usize;
            for i in lo..hi {
                if !seg.acked[i] {
                    seg.acked[i] = true;
                    seg.unacked -= 1;
                    self.unacked -= 1;
                    if seg.first_seq + i as u64 >= self.cursor {
                        self.unsent -= 1;
                    }
                    n += 1;
                }
            }
        }
        let mut jobs = Vec::new();
        if n > 0 {
            let mut kept = VecDeque::with_capacity(self.segments.len());
            for seg in std::mem::take(&mut self.segments) {
                if seg.unacked == 0 {
                    jobs.extend(self.forget_file(seg));
                } else {
                    kept.push_back(seg);
                }
            }
            self.segments = kept;
        }
        (n, jobs)
    }

    /// A new stream: everything unacknowledged is sent again, oldest first.
    pub(crate) fn rewind(&mut self) {
        self.cursor = self.segments.front().map_or(self.next_seq, |s| s.first_seq);
        self.unsent = self.unacked;
    }

    /// fsync of the files written since the last call (and of the directory if files were
    /// created), so records survive a machine crash, not only a process crash.
    pub(crate) fn sync_jobs(&mut self) -> Vec<IoJob> {
        let mut jobs: Vec<IoJob> = self
            .dirty
            .drain(..)
            .map(|path| IoJob::Sync { path })
            .collect();
        if std::mem::take(&mut self.dir_dirty)
            && let Some(dir) = &self.dir
        {
            jobs.push(IoJob::SyncDir { dir: dir.clone() });
        }
        jobs
    }

    #[cfg(test)]
    pub(crate) fn segment_ids(&self) -> Vec<u64> {
        self.segments.iter().map(|s| s.id).collect()
    }
}

fn segment_name(id: u64) -> String {
    format!("{SEGMENT_PREFIX}{id:020}{SEGMENT_SUFFIX}")
}

/// The records of one segment file; a torn or corrupt tail ends it.
fn decode_records(bytes: &[u8], path: &Path) -> Vec<UsageRecord> {
    let mut buf = bytes;
    let mut out = Vec::new();
    while !buf.is_empty() {
        let before = buf.len();
        match UsageRecord::decode_length_delimited(&mut buf) {
            Ok(r) => out.push(r),
            Err(e) => {
                tracing::warn!(
                    path = %path.display(),
                    records = out.len(),
                    ignored_bytes = before,
                    error = %e,
                    "usage spool segment ends in a torn or corrupt record; keeping the records before it"
                );
                break;
            }
        }
    }
    out
}

/// Runs file work in order. Missing files are not an error (a segment may be removed before its
/// fsync). Returns the first error; later jobs still run.
pub(crate) fn run_jobs(jobs: Vec<IoJob>) -> io::Result<()> {
    let mut first_error = None;
    for job in jobs {
        let result = match &job {
            IoJob::Append { path, bytes } => append_file(path, bytes),
            IoJob::Sync { path } => match OpenOptions::new().append(true).open(path) {
                Ok(f) => f.sync_data(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            },
            IoJob::SyncDir { dir } => {
                sync_dir(dir);
                Ok(())
            }
            IoJob::Remove { path } => match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        };
        if let Err(e) = result
            && first_error.is_none()
        {
            first_error = Some(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn append_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> UsageRecord {
        UsageRecord {
            request_id: format!("req-{i}"),
            input_tokens: i as u64,
            ..Default::default()
        }
    }

    fn ids(records: &[UsageRecord]) -> Vec<String> {
        records.iter().map(|r| r.request_id.clone()).collect()
    }

    #[test]
    fn batches_acks_and_resends_after_rewind() {
        let mut s = Spool::new(None, 100);
        let (jobs, dropped) = s.append((0..7).map(rec).collect());
        assert!(jobs.is_empty());
        assert_eq!(dropped, 0);
        assert_eq!((s.unacked(), s.unsent()), (7, 7));
        let (r1, b1) = s.next_batch(3, usize::MAX).unwrap();
        let (r2, b2) = s.next_batch(3, usize::MAX).unwrap();
        assert_eq!(ids(&b1), ["req-0", "req-1", "req-2"]);
        assert_eq!(ids(&b2), ["req-3", "req-4", "req-5"]);
        assert_eq!(s.unsent(), 1);
        // The second batch is acked, the first is lost with the stream.
        assert_eq!(s.ack(r2.clone()).0, 3);
        assert_eq!(s.ack(r2).0, 0, "a repeated ack changes nothing");
        s.rewind();
        assert_eq!((s.unacked(), s.unsent()), (4, 4));
        let (r, b) = s.next_batch(10, usize::MAX).unwrap();
        assert_eq!(ids(&b), ["req-0", "req-1", "req-2", "req-6"]);
        assert!(s.next_batch(10, usize::MAX).is_none());
        assert_eq!(s.ack(r).0, 4);
        assert_eq!(s.unacked(), 0);
        assert!(s.segment_ids().is_empty(), "acked segments are removed");
        // Unchanged: r1 referred to records that are gone.
        assert_eq!(s.ack(r1).0, 0);
    }

    fn with_content(i: usize, len: usize) -> UsageRecord {
        UsageRecord {
            content: Some(tollgate_proto::usage::v1::Content {
                request: bytes::Bytes::from(vec![b'q'; len]),
                request_bytes: len as u64,
                response: bytes::Bytes::from(vec![b'a'; len]),
                response_bytes: len as u64,
            }),
            ..rec(i)
        }
    }

    /// Batches stop before the recorded bodies they carry pass the limit (a record larger than
    /// the limit goes alone).
    #[test]
    fn batches_are_bounded_by_the_bodies_they_carry() {
        let mut s = Spool::new(None, 100);
        s.append(vec![
            with_content(0, 300),
            rec(1),
            with_content(2, 300),
            with_content(3, 2_000),
            rec(4),
        ]);
        let (r1, b1) = s.next_batch(10, 1_000).unwrap();
        assert_eq!(ids(&b1), ["req-0", "req-1"], "600 + 600 would pass 1000");
        let (r2, b2) = s.next_batch(10, 1_000).unwrap();
        assert_eq!(ids(&b2), ["req-2"]);
        let (r3, b3) = s.next_batch(10, 1_000).unwrap();
        assert_eq!(ids(&b3), ["req-3"], "alone, though larger than the limit");
        let (r4, b4) = s.next_batch(10, 1_000).unwrap();
        assert_eq!(ids(&b4), ["req-4"]);
        for r in [r1, r2, r3, r4] {
            s.ack(r);
        }
        assert_eq!(s.unacked(), 0);
    }

    #[test]
    fn the_bound_drops_the_oldest_segments() {
        // max 8 records -> segments of 2.
        let mut s = Spool::new(None, 8);
        let mut dropped = 0;
        for i in 0..20 {
            dropped += s.append(vec![rec(i)]).1;
            assert!(s.unacked() <= 8);
        }
        assert_eq!(dropped, 12);
        assert_eq!(s.unacked(), 8);
        let (_, b) = s.next_batch(100, usize::MAX).unwrap();
        assert_eq!(
            ids(&b),
            (12..20).map(|i| format!("req-{i}")).collect::<Vec<_>>()
        );
    }

    #[test]
    fn dropping_segments_keeps_the_unsent_count_right() {
        let mut s = Spool::new(None, 8);
        s.append((0..8).map(rec).collect());
        let (r, _) = s.next_batch(3, usize::MAX).unwrap(); // 0..3 in flight
        assert_eq!(s.unsent(), 5);
        s.append((8..12).map(rec).collect()); // drops segments [0,1] and [2,3]
        assert_eq!(s.unacked(), 8);
        assert_eq!(
            s.unsent(),
            8,
            "0..3 were sent; 3 was dropped unsent; 4..12 remain"
        );
        assert_eq!(s.ack(r).0, 0, "acks for dropped records are ignored");
        let (_, b) = s.next_batch(100, usize::MAX).unwrap();
        assert_eq!(
            ids(&b),
            (4..12).map(|i| format!("req-{i}")).collect::<Vec<_>>()
        );
        assert_eq!(s.unsent(), 0);
    }

    #[test]
    fn segment_files_round_trip_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, loaded) = Spool::open(dir.path(), 100).unwrap();
        assert_eq!(loaded.records, 0);
        let (jobs, _) = s.append((0..30).map(rec).collect()); // segments of 25
        assert_eq!(jobs.len(), 2);
        run_jobs(jobs).unwrap();
        run_jobs(s.sync_jobs()).unwrap();
        let files = |d: &Path| {
            let mut f: Vec<_> = fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            f.sort();
            f
        };
        assert_eq!(
            files(dir.path()),
            [segment_name(1), segment_name(2)],
            "one file per segment"
        );
        // Ack the first 25: the first segment's file goes.
        let (r, _) = s.next_batch(25, usize::MAX).unwrap();
        let (n, jobs) = s.ack(r);
        assert_eq!(n, 25);
        run_jobs(jobs).unwrap();
        assert_eq!(files(dir.path()), [segment_name(2)]);
        // A torn write at the end of the second file.
        append_file(&dir.path().join(segment_name(2)), &[0x80, 0x01, 0x0a]).unwrap();
        let (mut s2, loaded) = Spool::open(dir.path(), 100).unwrap();
        assert_eq!((loaded.records, loaded.segments, loaded.dropped), (5, 1, 0));
        let (_, b) = s2.next_batch(100, usize::MAX).unwrap();
        assert_eq!(
            ids(&b),
            (25..30).map(|i| format!("req-{i}")).collect::<Vec<_>>()
        );
        // New records go to a new segment after the loaded ones.
        s2.append(vec![rec(99)]);
        assert_eq!(s2.segment_ids(), [2, 3]);
    }

    #[test]
    fn loading_more_than_the_bound_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 1000).unwrap();
        let (jobs, _) = s.append((0..1000).map(rec).collect());
        run_jobs(jobs).unwrap();
        let (mut s2, loaded) = Spool::open(dir.path(), 500).unwrap();
        assert_eq!(loaded.records, 1000);
        assert_eq!(loaded.dropped, 500);
        let (_, b) = s2.next_batch(10_000, usize::MAX).unwrap();
        assert_eq!(b.len(), 500);
        assert_eq!(b[0].request_id, "req-500");
    }
}
