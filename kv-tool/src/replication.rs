//! `kv serve` and `kv follow`: a primary and a replica from the command line.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kv_engine::{Db, Options, WriteBatch};
use kv_replication::{
    Codec, OnTimeout, Primary, PrimaryOptions, PrimaryStats, Replica, ReplicaOptions, ReplicaStats,
    SemiSync, TcpConnector, TcpListener,
};

use crate::batch_input::{BatchOp, parse_line};
use crate::cli::{FollowArgs, ServeArgs};
use crate::error::{CliError, CliResult};
use crate::escape::Encoding;
use crate::output::Out;

impl From<kv_replication::Error> for CliError {
    fn from(e: kv_replication::Error) -> Self {
        match e {
            kv_replication::Error::InvalidArgument(m) => CliError::Usage(m),
            kv_replication::Error::Db(e) => e.into(),
            other => CliError::Data(other.to_string()),
        }
    }
}

fn codecs(list: &str) -> CliResult<Vec<Codec>> {
    list.split(',')
        .map(|n| {
            Codec::from_name(n.trim())
                .ok_or_else(|| CliError::usage(format!("unknown codec {n:?} (zstd, snappy, none)")))
        })
        .collect()
}

fn primary_line(s: &PrimaryStats, db: &Db) -> String {
    let replicas: Vec<String> = s
        .replicas
        .iter()
        .map(|r| {
            format!(
                "{:016x}@{} {} acked {} ({} behind) {}",
                r.replica_id,
                r.peer,
                if r.connected { "up" } else { "down" },
                r.acked_seq,
                db.last_seq().get().saturating_sub(r.acked_seq),
                r.codec.name()
            )
        })
        .collect();
    format!(
        "primary: seq {}, {} batches ({} ops) sent, {} raw -> {} wire bytes, {} bootstraps{}; replicas: [{}]",
        db.last_seq().get(),
        s.batches_sent,
        s.ops_sent,
        s.raw_bytes_sent,
        s.wire_bytes_sent,
        s.bootstraps,
        if s.semi_sync_degraded {
            ", semi-sync DEGRADED to async"
        } else {
            ""
        },
        replicas.join(", ")
    )
}

fn replica_line(s: &ReplicaStats) -> String {
    format!(
        "replica: {:?}, applied {}, primary at {}, lag {} seqs / {:.3} s, {} batches, {} ops, {} duplicates skipped, {} errors, {} bootstraps{}",
        s.state,
        s.applied_seq,
        s.primary_durable_seq,
        s.lag_seqs,
        s.lag.as_secs_f64(),
        s.batches,
        s.ops_applied,
        s.duplicates_skipped,
        s.errors,
        s.bootstraps,
        s.last_error
            .as_ref()
            .map_or(String::new(), |e| format!(", last error: {e}"))
    )
}

#[expect(
    clippy::print_stderr,
    reason = "status lines of a long-running command"
)]
fn status(line: &str) {
    eprintln!("{line}");
}

/// Serves `dir` until killed; applies writes read from stdin.
pub(crate) fn serve(dir: &Path, args: &ServeArgs, enc: Encoding, out: &mut Out) -> CliResult {
    let opts = Options::default();
    let fs = opts.file_system();
    let db_dir = match kv_replication::active_db_dir(&*fs, dir)? {
        Some(active) if args.promote => {
            kv_replication::promote_stopped(dir, &opts)?;
            active
        }
        Some(_) => {
            return Err(CliError::usage(format!(
                "{} is a replica's directory: pass --promote to make it a primary (after stopping the replica)",
                dir.display()
            )));
        }
        None if args.promote => {
            return Err(CliError::usage(format!(
                "{} is not a replica's directory",
                dir.display()
            )));
        }
        None => dir.to_path_buf(),
    };
    let db = Arc::new(Db::open(&db_dir, opts)?);
    let semi_sync = args.semi_sync.map(|k| SemiSync {
        replicas: k,
        timeout: Duration::from_millis(args.semi_sync_timeout_ms),
        on_timeout: if args.on_timeout == "degrade" {
            OnTimeout::Degrade
        } else {
            OnTimeout::Fail
        },
    });
    let primary = Primary::start(
        Arc::clone(&db),
        PrimaryOptions {
            codecs: codecs(&args.codecs)?,
            semi_sync,
            ..PrimaryOptions::default()
        },
    )?;
    let listener = TcpListener::bind(&args.listen)
        .map_err(|e| CliError::usage(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::data(format!("listener address: {e}")))?;
    primary.serve(Box::new(listener))?;
    out.line(format!("listening {addr}"))?;
    out.finish()?;

    let stop = Arc::new(AtomicBool::new(false));
    let reporter = (args.status_every > 0).then(|| {
        let (primary_db, stop) = (Arc::clone(&db), Arc::clone(&stop));
        let every = Duration::from_secs(args.status_every);
        let primary = &primary;
        move || {
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if last.elapsed() >= every {
                    status(&primary_line(&primary.stats(), &primary_db));
                    last = Instant::now();
                }
            }
        }
    });
    std::thread::scope(|scope| -> CliResult {
        if let Some(r) = reporter {
            scope.spawn(r);
        }
        let result = (|| -> CliResult {
            for (i, line) in std::io::stdin().lock().lines().enumerate() {
                let line = line.map_err(|e| CliError::data(format!("reading stdin: {e}")))?;
                let Some(op) = parse_line(&line, i + 1, enc)? else {
                    continue;
                };
                let mut b = WriteBatch::new();
                match op {
                    BatchOp::Put(k, v) => b.put(k, v),
                    BatchOp::Delete(k) => b.delete(k),
                };
                let seq = primary.write(&b)?;
                out.line(format!("ok {seq}"))?;
                out.finish()?;
            }
            // Stdin is done; keep serving until killed.
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        })();
        stop.store(true, Ordering::Relaxed);
        result
    })
}

/// Follows the primary at `args.primary`, keeping the replica in `root`, until killed.
pub(crate) fn follow(root: &Path, args: &FollowArgs, out: &mut Out) -> CliResult {
    let replica = Replica::open(
        root,
        Arc::new(TcpConnector::new(args.primary.clone())),
        ReplicaOptions {
            codecs: codecs(&args.codecs)?,
            db: if args.lose_unsynced {
                Options::default().fs(Arc::new(kv_wal::UnsyncedFs::new()))
            } else {
                Options::default()
            },
            ..ReplicaOptions::default()
        },
    )?;
    out.line(format!(
        "following {} into {} (replica {:016x})",
        args.primary,
        replica.db().path().display(),
        replica.node_id()
    ))?;
    out.finish()?;
    let every = Duration::from_millis(args.status_every_ms.max(1));
    loop {
        std::thread::sleep(every);
        if args.status_every_ms > 0 {
            out.line(replica_line(&replica.stats()))?;
            out.finish()?;
        }
    }
}
