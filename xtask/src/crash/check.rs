//! The check of a recovered state: the model of what the database may hold (settled
//! after each cycle), the stress log and the recovery's listing read against it, and
//! the violations found (see `crash.rs` for the rules).

use std::collections::{BTreeMap, HashMap};

use super::kill::StressRun;
use super::process::lines;
use super::stress_log::{Line, ValueId};

/// A violation found by the checks, one line each.
#[derive(Default)]
pub(super) struct Tally {
    pub lost: u64,
    pub garbage: u64,
    pub resurrected: u64,
    pub torn: u64,
    pub holes: u64,
    pub seq_regressions: u64,
    pub messages: Vec<String>,
}

impl Tally {
    pub(super) fn total(&self) -> u64 {
        self.lost + self.garbage + self.resurrected + self.torn + self.holes + self.seq_regressions
    }
    pub(super) fn note(&mut self, msg: String) {
        if self.messages.len() < 50 {
            self.messages.push(msg);
        }
    }
}

/// One operation of the stress log.
struct Op {
    id: ValueId,
    /// Keys and whether each is a put (else a delete).
    items: Vec<(String, bool)>,
    /// Acknowledged: (sequence number, synced).
    ack: Option<(u64, bool)>,
}

/// What recovery shows for a key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Recovered {
    Absent,
    Value(ValueId),
    Garbage,
}

/// The model of the database across cycles, what the logs said, and the violations.
#[derive(Default)]
pub(super) struct Checker {
    /// The settled state: key -> value (None: absent).
    pub model: HashMap<String, Option<ValueId>>,
    /// Highest operation number begun per (run, thread), for older runs' values.
    pub begun: HashMap<(u64, u32), u64>,
    pub prev_seq: u64,
    /// How long the stress runs' opens took (their "O" lines), the latest 50.
    pub open_ms: Vec<u64>,
    pub recovery_ms: Vec<u64>,
    pub acked: u64,
    pub inflight_present: u64,
    pub inflight_absent: u64,
    pub tally: Tally,
}

impl Checker {
    /// Checks the recovered state against the model and settles the model; returns
    /// whether the stress run had opened the database before the kill.
    pub(super) fn verify(
        &mut self,
        cycle: u64,
        run: &StressRun,
        check_out: &str,
    ) -> Result<bool, String> {
        // The stress log.
        let mut ops: BTreeMap<(u32, u64), Op> = BTreeMap::new();
        let mut opened_at: Option<u64> = None;
        for line in &run.log {
            match parse(line, "the stress log")? {
                Line::Open { ms, seq } => {
                    opened_at = Some(seq);
                    self.open_ms.push(ms);
                    if self.open_ms.len() > 50 {
                        self.open_ms.remove(0);
                    }
                }
                Line::Begin {
                    tid, opno, items, ..
                } => {
                    ops.insert(
                        (tid, opno),
                        Op {
                            id: ValueId {
                                run: cycle,
                                tid,
                                opno,
                            },
                            items,
                            ack: None,
                        },
                    );
                    self.begun.insert((cycle, tid), opno);
                }
                Line::Ack {
                    tid,
                    opno,
                    seq,
                    synced,
                } => {
                    let op = ops
                        .get_mut(&(tid, opno))
                        .ok_or_else(|| format!("ack without begin: {line}"))?;
                    op.ack = Some((seq, synced));
                    self.acked += 1;
                }
                _ => {}
            }
        }
        // The recovered state.
        let mut seq: Option<u64> = None;
        let mut recovered: HashMap<String, Recovered> = HashMap::new();
        for line in lines(check_out.as_bytes()) {
            match parse(&line, "the check's listing")? {
                Line::Open { ms, .. } => self.recovery_ms.push(ms),
                Line::Seq(s) => seq = Some(s),
                Line::Key { key, id } => {
                    recovered.insert(key, Recovered::Value(id));
                }
                Line::Garbage { key, why } => {
                    self.tally.garbage += 1;
                    self.tally.note(format!("garbage: {key}: {why}"));
                    recovered.insert(key, Recovered::Garbage);
                }
                _ => {}
            }
        }
        let seq = seq.ok_or("the check printed no SEQ line")?;

        // Sequence numbers.
        let max_acked = ops
            .values()
            .filter_map(|o| o.ack.map(|a| a.0))
            .max()
            .unwrap_or(0);
        let power_cut = run.plan.loss.power_cut();
        let bar = if power_cut {
            ops.values()
                .filter_map(|o| o.ack.filter(|a| a.1).map(|a| a.0))
                .max()
                .unwrap_or(0)
        } else {
            max_acked
        };
        if seq < bar {
            self.tally.seq_regressions += 1;
            self.tally.note(format!(
                "seq regression: recovered last sequence {seq} is below {bar}, acknowledged {}",
                if power_cut {
                    "by a synced write"
                } else {
                    "before the kill"
                }
            ));
        }
        if seq < self.prev_seq {
            self.tally.seq_regressions += 1;
            self.tally.note(format!(
                "seq regression: recovered last sequence {seq} is below the previous recovery's {}",
                self.prev_seq
            ));
        }
        if let Some(o) = opened_at
            && o < self.prev_seq
        {
            self.tally.seq_regressions += 1;
            self.tally.note(format!(
                "seq regression: the stress run opened at sequence {o}, below the previous recovery's {}",
                self.prev_seq
            ));
        }

        // Each key's history in this cycle, in operation order.
        let mut history: HashMap<String, Vec<(usize, bool)>> = HashMap::new();
        let op_list: Vec<&Op> = ops.values().collect();
        for (i, op) in op_list.iter().enumerate() {
            for (k, put) in &op.items {
                history.entry(k.clone()).or_default().push((i, *put));
            }
        }
        let mut keys: Vec<String> = self.model.keys().cloned().collect();
        keys.extend(history.keys().cloned());
        keys.extend(recovered.keys().cloned());
        keys.sort();
        keys.dedup();

        // Per in-flight operation: (keys applied, keys not applied).
        let mut inflight: HashMap<usize, (u32, u32)> = HashMap::new();
        let mut settled = HashMap::new();
        for k in &keys {
            let base = self.model.get(k).copied().flatten();
            let hist = history.get(k).map(Vec::as_slice).unwrap_or_default();
            let r = recovered.get(k).copied().unwrap_or(Recovered::Absent);
            // Position 0 is the state before this cycle; position j the j-th op on k.
            let value_at = |p: usize| -> Option<ValueId> {
                if p == 0 {
                    base
                } else {
                    hist.get(p - 1)
                        .and_then(|(i, put)| put.then(|| op_list.get(*i).map(|o| o.id)).flatten())
                }
            };
            // The last position acknowledged at or below `cut`.
            let last_acked_upto = |cut: u64| {
                hist.iter()
                    .enumerate()
                    .filter(|(_, (i, _))| {
                        op_list
                            .get(*i)
                            .and_then(|o| o.ack)
                            .is_some_and(|(s, _)| s <= cut)
                    })
                    .map(|(j, _)| j + 1)
                    .next_back()
                    .unwrap_or(0)
            };
            // What the prefix at the recovered sequence number holds, and what must
            // have survived whatever that number is.
            let expected = last_acked_upto(seq);
            let required = last_acked_upto(bar);
            let in_flight = hist
                .last()
                .filter(|(i, _)| op_list.get(*i).is_some_and(|o| o.ack.is_none()))
                .map(|_| hist.len());
            // The positions the recovered value can stand for; -1: older than the cycle.
            let positions: Vec<i64> = match r {
                Recovered::Garbage => {
                    continue; // counted already
                }
                Recovered::Absent => (0..=hist.len())
                    .filter(|p| value_at(*p).is_none())
                    .map(|p| p as i64)
                    .collect(),
                Recovered::Value(id) => {
                    let mut p: Vec<i64> = (0..=hist.len())
                        .filter(|p| value_at(*p) == Some(id))
                        .map(|p| p as i64)
                        .collect();
                    if p.is_empty() {
                        let older_run = id.run < cycle
                            && self
                                .begun
                                .get(&(id.run, id.tid))
                                .is_some_and(|max| id.opno <= *max);
                        if older_run {
                            p.push(-1);
                        } else {
                            self.tally.garbage += 1;
                            self.tally.note(format!(
                                "garbage: {k} holds the value of run {} thread {} op {}, which never wrote it",
                                id.run, id.tid, id.opno
                            ));
                            continue;
                        }
                    }
                    p
                }
            };
            let fits = |p: usize| positions.contains(&(p as i64));
            if let Some(m) = in_flight {
                let e = inflight
                    .entry(hist.get(m - 1).map_or(0, |h| h.0))
                    .or_default();
                match (fits(m), fits(expected)) {
                    (true, false) => e.0 += 1,
                    (false, true) => e.1 += 1,
                    _ => {}
                }
            }
            let newest = positions.iter().copied().max().unwrap_or(-1);
            let ok = in_flight.is_some_and(fits) || (fits(expected) && newest >= required as i64);
            if ok {
                settled.insert(
                    k.clone(),
                    match r {
                        Recovered::Value(id) => Some(id),
                        _ => None,
                    },
                );
                continue;
            }
            // A violation: classify it.
            let op_at = |p: usize| {
                p.checked_sub(1)
                    .and_then(|j| hist.get(j))
                    .and_then(|(i, _)| op_list.get(*i))
            };
            let describe = |p: i64| -> String {
                match p {
                    -1 => "an older value".into(),
                    0 => format!("its state before this cycle ({base:?})"),
                    p => match value_at(p as usize) {
                        Some(ValueId {
                            run: r,
                            tid: t,
                            opno: o,
                        }) => format!("the put of run {r} thread {t} op {o}"),
                        None => "nothing (a delete)".into(),
                    },
                }
            };
            let got = match r {
                Recovered::Absent => "nothing".to_string(),
                _ => describe(newest),
            };
            let deleted = |p: usize| value_at(p).is_none() && r != Recovered::Absent;
            if newest < required as i64 {
                let o = op_at(required);
                if deleted(required) {
                    self.tally.resurrected += 1;
                    self.tally.note(format!(
                        "resurrected: {k} was deleted durably (op {:?}, ack {:?}) but holds {got}",
                        o.map(|o| o.id),
                        o.and_then(|o| o.ack)
                    ));
                } else {
                    self.tally.lost += 1;
                    self.tally.note(format!(
                        "lost: {k} should hold {} (op {:?}, acknowledged at (seq, synced) {:?}, durable) but holds {got}",
                        describe(required as i64),
                        o.map(|o| o.id),
                        o.and_then(|o| o.ack)
                    ));
                }
            } else if newest > expected as i64 {
                self.tally.holes += 1;
                self.tally.note(format!(
                    "hole: {k} shows {got}, acknowledged above the recovered sequence {seq}"
                ));
            } else {
                let o = op_at(expected);
                if deleted(expected) {
                    self.tally.resurrected += 1;
                } else {
                    self.tally.holes += 1;
                }
                self.tally.note(format!(
                    "hole: {k} misses {} (op {:?}, ack {:?}, at or below the recovered sequence {seq}) and holds {got}",
                    describe(expected as i64),
                    o.map(|o| o.id),
                    o.and_then(|o| o.ack)
                ));
            }
        }
        for (i, (applied, not_applied)) in &inflight {
            if *applied > 0 && *not_applied > 0 {
                self.tally.torn += 1;
                self.tally.note(format!(
                    "torn: in-flight op {:?}: {applied} keys applied, {not_applied} not",
                    op_list.get(*i).map(|o| o.id)
                ));
            }
            if *applied > 0 {
                self.inflight_present += 1;
            } else {
                self.inflight_absent += 1;
            }
        }
        self.model = settled;
        self.prev_seq = self.prev_seq.max(seq);
        Ok(opened_at.is_some())
    }
}

/// One line of `what`, read with `kv stress`'s own definition of its lines.
fn parse(line: &str, what: &str) -> Result<Line, String> {
    line.parse().map_err(|e| format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crash::kill::StressRun;
    use crate::crash::plan::{Loss, Plan};

    fn stress(log: &str, lose: bool) -> StressRun {
        StressRun {
            log: lines(log.as_bytes()),
            stderr: String::new(),
            exited_by_itself: false,
            open_hung: false,
            plan: Plan {
                sync: "never".into(),
                loss: if lose { Loss::Unsynced } else { Loss::Nothing },
                config_seed: None,
                check_config_seed: None,
            },
            config: None,
        }
    }

    /// Thread 0: put a (seq 1, synced), batch b+c (seq 3, unsynced), then an in-flight
    /// batch of a and d.
    const LOG: &str = "S run=1\nO 5 0\nB 0 1 put +a\nA 0 1 1 1\nB 0 2 batch +b +c\nA 0 2 3 0\nB 0 3 batch +a -d\n";

    fn outcome(lose: bool, check: &str) -> (u64, u64, u64, u64, u64, u64) {
        let mut h = Checker::default();
        h.verify(1, &stress(LOG, lose), check).unwrap();
        let t = &h.tally;
        (
            t.lost,
            t.garbage,
            t.resurrected,
            t.torn,
            t.holes,
            t.seq_regressions,
        )
    }

    #[test]
    fn a_complete_state_passes_and_losses_are_classified() {
        // Everything acknowledged, in-flight batch absent or applied.
        assert_eq!(
            outcome(false, "SEQ 3\nK a 1 0 1\nK b 1 0 2\nK c 1 0 2\n"),
            (0, 0, 0, 0, 0, 0)
        );
        assert_eq!(
            outcome(false, "SEQ 5\nK a 1 0 3\nK b 1 0 2\nK c 1 0 2\n"),
            (0, 0, 0, 0, 0, 0)
        );
        // The in-flight batch half applied.
        assert_eq!(
            outcome(false, "SEQ 5\nK a 1 0 3\nK b 1 0 2\nK c 1 0 2\nK d 9 9 9\n").1,
            1
        );
        let torn = outcome(false, "SEQ 5\nK a 1 0 1\nK b 1 0 2\nK c 1 0 2\nK d 1 0 3\n");
        assert_eq!(torn.1, 1, "d was deleted by op 3, never written: garbage");
        // On the real file system an unsynced acknowledged batch must survive.
        assert_eq!(outcome(false, "SEQ 1\nK a 1 0 1\n"), (2, 0, 0, 0, 0, 1));
        // Losing unsynced data, it may go, as a whole (a prefix)...
        assert_eq!(outcome(true, "SEQ 1\nK a 1 0 1\n"), (0, 0, 0, 0, 0, 0));
        // ...but not half of it, nor the synced put before it.
        assert_eq!(outcome(true, "SEQ 1\nK a 1 0 1\nK b 1 0 2\n").4, 1);
        assert_eq!(outcome(true, "SEQ 0\n"), (1, 0, 0, 0, 0, 1));
        assert_eq!(
            outcome(
                false,
                "SEQ 3\nG a no header terminator\nK b 1 0 2\nK c 1 0 2\n"
            )
            .1,
            1
        );
    }

    #[test]
    fn a_torn_in_flight_batch_and_a_resurrection_are_caught() {
        let mut h = Checker::default();
        h.model.insert(
            "d".into(),
            Some(ValueId {
                run: 0,
                tid: 0,
                opno: 7,
            }),
        );
        h.begun.insert((0, 0), 7);
        // Op 3 applied to a but not to d (d still holds its old value).
        h.verify(
            1,
            &stress(LOG, false),
            "SEQ 5\nK a 1 0 3\nK b 1 0 2\nK c 1 0 2\nK d 0 0 7\n",
        )
        .unwrap();
        assert_eq!(h.tally.torn, 1);
        // Next cycle: d was deleted by the applied batch... here it comes back.
        let mut h = Checker::default();
        h.model.insert(
            "d".into(),
            Some(ValueId {
                run: 0,
                tid: 0,
                opno: 7,
            }),
        );
        h.begun.insert((0, 0), 7);
        let log = "O 5 0\nB 0 1 del -d\nA 0 1 1 1\n";
        h.verify(1, &stress(log, false), "SEQ 1\nK d 0 0 7\n")
            .unwrap();
        assert_eq!(h.tally.resurrected, 1);
    }
}
