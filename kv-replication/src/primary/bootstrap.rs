//! Bootstrapping a replica the log cannot serve: why it must ([`bootstrap_reason`]),
//! and a checkpoint made, hashed and streamed file by file, with heartbeats while it
//! is being made.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::shared::{Shared, relock};
use super::stats::add;
use crate::error::{Error, Result};
use crate::protocol::{FileMeta, FrameWriter, Hello, Message};
use crate::remove_tree::remove_tree_logged;
use crate::transport::Stream;

/// Why a replica at `applied` with `history` cannot continue from `applied + 1`.
pub(super) fn bootstrap_reason(sh: &Shared, hello: &Hello) -> Option<String> {
    let a = hello.applied_seq;
    let ours = &sh.history();
    let durable = sh.db.wal().durable_seq();
    if a > durable {
        return Some(format!(
            "replica has seq {a} but the primary's durable log ends at {durable}"
        ));
    }
    if !hello.history.agrees_with(ours, a) {
        return Some(format!(
            "replica's data at seq {a} belongs to history {:?}, the primary's to {:?}",
            hello.history.id_at(a),
            ours.id_at(a)
        ));
    }
    let oldest = sh.db.wal().oldest_retained_seq();
    if a + 1 < oldest {
        return Some(format!(
            "the primary's log starts at seq {oldest}, the replica needs {}",
            a + 1
        ));
    }
    None
}

/// Makes a checkpoint and streams it; returns its sequence number.
pub(super) fn send_checkpoint(
    sh: &Shared,
    id: u64,
    generation: u64,
    reason: &str,
    writer: &mut FrameWriter<Box<dyn Stream>>,
) -> Result<u64> {
    let db = &sh.db;
    let fs = db.fs();
    let parent = sh.checkpoint_dir();
    let dir = parent.join(format!(
        "{id:016x}-{}",
        sh.next_generation.fetch_add(1, Ordering::Relaxed)
    ));
    // Keep the whole retained log while the checkpoint is made, then from just after it.
    let pin = db.wal().pin(db.wal().oldest_retained_seq());
    let result = (|| {
        // Making and hashing the checkpoint can take long: heartbeats meanwhile tell
        // the replica the primary is alive (it waits for them, not for a deadline).
        let (seq, files) = with_heartbeats(sh, writer, || -> Result<(u64, Vec<FileMeta>)> {
            let seq = db.checkpoint(&dir)?.get();
            pin.set(seq + 1);
            if let Some(p) = relock(&sh.sessions)
                .get(&id)
                .filter(|s| s.generation == generation)
                .and_then(|s| s.pin.as_ref())
            {
                p.set(seq + 1);
            }
            let mut files = Vec::new();
            let mut names = fs.list_dir(&dir).map_err(|e| Error::io(dir.display(), e))?;
            names.sort();
            for n in &names {
                if sh.stopping(id, generation) {
                    return Err(Error::Stopped);
                }
                let p = dir.join(n);
                let (len, checksum) = hash_file(&*fs, &p)?;
                files.push(FileMeta {
                    name: n.clone(),
                    len,
                    checksum,
                });
            }
            Ok((seq, files))
        })?;
        writer.send(&Message::BootstrapBegin {
            checkpoint_seq: seq,
            reason: reason.to_string(),
            history: sh.history(),
            files: files.clone(),
        })?;
        for (i, f) in files.iter().enumerate() {
            let p = dir.join(&f.name);
            let file = fs.open_read(&p).map_err(|e| Error::io(p.display(), e))?;
            let mut offset = 0u64;
            while offset < f.len {
                let n = (f.len - offset).min(sh.opts.chunk_bytes as u64) as usize;
                let mut data = vec![0u8; n];
                file.read_exact_at(offset, &mut data)
                    .map_err(|e| Error::io(p.display(), e))?;
                writer.send(&Message::BootstrapChunk {
                    file: i as u32,
                    offset,
                    data,
                })?;
                offset += n as u64;
            }
        }
        writer.send(&Message::BootstrapEnd)?;
        add(&sh.counters.bootstraps, 1);
        Ok(seq)
    })();
    remove_tree_logged(&*fs, &dir);
    result
}

/// Runs `work` while another thread sends a heartbeat every heartbeat interval through
/// `writer` (which `work` does not use).
fn with_heartbeats<T>(
    sh: &Shared,
    writer: &mut FrameWriter<Box<dyn Stream>>,
    work: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let beat = scope.spawn(|| -> Result<()> {
            let mut last = Instant::now();
            while !done.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(10));
                if last.elapsed() >= sh.opts.heartbeat {
                    writer.send(&Message::Heartbeat {
                        durable_seq: sh.db.wal().durable_seq(),
                    })?;
                    last = Instant::now();
                }
            }
            Ok(())
        });
        let result = work();
        done.store(true, Ordering::Release);
        let beats = beat.join().unwrap_or_else(|_| {
            Err(Error::InvalidArgument(
                "the heartbeat thread panicked".into(),
            ))
        });
        let value = result?;
        beats.map(|()| value)
    })
}

fn hash_file(fs: &dyn kv_wal::Fs, p: &Path) -> Result<(u64, u64)> {
    let file = fs.open_read(p).map_err(|e| Error::io(p.display(), e))?;
    let len = file.len().map_err(|e| Error::io(p.display(), e))?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    while offset < len {
        let n = (len - offset).min(buf.len() as u64) as usize;
        let chunk = buf.get_mut(..n).unwrap_or_default();
        file.read_exact_at(offset, chunk)
            .map_err(|e| Error::io(p.display(), e))?;
        h.update(chunk);
        offset += n as u64;
    }
    Ok((len, h.digest()))
}
