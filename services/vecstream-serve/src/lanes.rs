//! The lane scheduler: per-lane queues of single texts (already tokenised), admission by
//! queued tokens, and batches filled from the highest lane first with a starvation guard.
//! Pure state over an explicit clock; the dispatcher owns the I/O.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use vecstream_core::Lane;

/// What waits in a lane.
pub trait Queued {
    /// Tokens it costs (its sequence length).
    fn tokens(&self) -> usize;
    /// True when its caller is gone: dropped instead of embedded.
    fn cancelled(&self) -> bool;
}

/// Why a request was not queued.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub lane: Lane,
    /// The request alone is over the lane's limit: it never fits (split it).
    pub too_large: bool,
    /// Its tokens.
    pub cost: usize,
    pub queued_tokens: usize,
    pub limit: usize,
    /// When the lane should have room again, from the measured throughput.
    pub retry_after: Duration,
}

struct Entry<T> {
    lane: Lane,
    enqueued: Instant,
    item: T,
}

/// One item taken for a batch.
#[derive(Debug)]
pub struct Taken<T> {
    pub lane: Lane,
    pub waited: Duration,
    pub item: T,
}

/// See the module docs.
pub struct Scheduler<T> {
    queues: [VecDeque<Entry<T>>; 3],
    queued_tokens: [usize; 3],
    max_queued: [usize; 3],
    lanes: bool,
    starvation: Duration,
    /// Tokens per second the engine has been embedding (moving average).
    throughput: f64,
}

impl<T> std::fmt::Debug for Scheduler<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("queued_tokens", &self.queued_tokens)
            .field("max_queued", &self.max_queued)
            .field("lanes", &self.lanes)
            .finish_non_exhaustive()
    }
}

impl<T: Queued> Scheduler<T> {
    /// `max_queued` per lane (query, stream, bulk); with `lanes` off every item waits in
    /// one first-come queue (admission still per lane).
    pub fn new(max_queued: [usize; 3], lanes: bool, starvation: Duration) -> Self {
        Self {
            queues: Default::default(),
            queued_tokens: [0; 3],
            max_queued,
            lanes,
            starvation,
            throughput: 0.0,
        }
    }

    /// Refuses a request of `cost` tokens in `lane` now, without queueing anything: over
    /// the limit by itself, or the lane already full.
    pub fn check(&self, lane: Lane, cost: usize) -> Result<(), Rejected> {
        let i = lane.index();
        let queued = self.queued_tokens[i];
        let too_large = cost > self.max_queued[i];
        if too_large || (queued > 0 && queued + cost > self.max_queued[i]) {
            // Everything at this lane's priority or above drains first.
            let ahead: usize = self.queued_tokens[..=i].iter().sum::<usize>() + cost;
            let secs = if self.throughput > 0.0 {
                (ahead as f64 / self.throughput).ceil()
            } else {
                1.0
            };
            return Err(Rejected {
                lane,
                too_large,
                cost,
                queued_tokens: queued,
                limit: self.max_queued[i],
                retry_after: Duration::from_secs_f64(secs.clamp(1.0, 60.0)),
            });
        }
        Ok(())
    }

    /// Queues a request's items in `lane`, or refuses all of them (see [`Scheduler::check`]).
    pub fn admit(&mut self, lane: Lane, items: Vec<T>, now: Instant) -> Result<(), Rejected> {
        let cost: usize = items.iter().map(Queued::tokens).sum();
        self.check(lane, cost)?;
        let i = lane.index();
        self.queued_tokens[i] += cost;
        let q = if self.lanes { i } else { 0 };
        self.queues[q].extend(items.into_iter().map(|item| Entry {
            lane,
            enqueued: now,
            item,
        }));
        Ok(())
    }

    /// Tokens queued in `lane`.
    pub fn queued_tokens(&self, lane: Lane) -> usize {
        self.queued_tokens[lane.index()]
    }

    pub fn is_empty(&self) -> bool {
        self.queues.iter().all(VecDeque::is_empty)
    }

    /// Tokens queued in every lane.
    pub fn total_queued(&self) -> usize {
        self.queued_tokens.iter().sum()
    }

    /// When the oldest queued item was queued.
    pub fn oldest(&self) -> Option<Instant> {
        self.queues
            .iter()
            .filter_map(|q| q.front().map(|e| e.enqueued))
            .min()
    }

    /// Feeds the throughput estimate with one finished batch.
    pub fn observe(&mut self, tokens: usize, took: Duration) {
        let rate = tokens as f64 / took.as_secs_f64().max(1e-6);
        self.throughput = if self.throughput == 0.0 {
            rate
        } else {
            0.8 * self.throughput + 0.2 * rate
        };
    }

    /// The next batch of at most `budget` tokens (at least one item when any is queued):
    /// the highest lane first, except that a lower lane whose oldest item has waited past
    /// the starvation guard goes first. A batch led by query texts takes no text of a lower
    /// lane: a query's latency is the forward pass of its own batch, kept short.
    pub fn next_batch(&mut self, budget: usize, now: Instant) -> Vec<Taken<T>> {
        self.drop_cancelled();
        let starved = (1..3)
            .filter(|&q| {
                self.queues[q]
                    .front()
                    .is_some_and(|e| now.saturating_duration_since(e.enqueued) >= self.starvation)
            })
            .min_by_key(|&q| self.queues[q].front().map(|e| e.enqueued));
        let order: Vec<usize> = starved
            .into_iter()
            .chain((0..3).filter(|q| Some(*q) != starved))
            .collect();
        let mut out: Vec<Taken<T>> = Vec::new();
        let mut used = 0;
        for q in order {
            if q > 0 && self.lanes && out.first().is_some_and(|t| t.lane == Lane::Query) {
                break;
            }
            while let Some(front) = self.queues[q].front() {
                let t = front.item.tokens();
                if !out.is_empty() && used + t > budget {
                    break;
                }
                let e = self.queues[q].pop_front().expect("front exists");
                used += t;
                self.queued_tokens[e.lane.index()] -= t;
                out.push(Taken {
                    lane: e.lane,
                    waited: now.saturating_duration_since(e.enqueued),
                    item: e.item,
                });
            }
        }
        out
    }

    fn drop_cancelled(&mut self) {
        for q in &mut self.queues {
            q.retain(|e| {
                let keep = !e.item.cancelled();
                if !keep {
                    self.queued_tokens[e.lane.index()] -= e.item.tokens();
                }
                keep
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Item(&'static str, usize, bool);
    impl Queued for Item {
        fn tokens(&self) -> usize {
            self.1
        }
        fn cancelled(&self) -> bool {
            self.2
        }
    }

    fn names(batch: &[Taken<Item>]) -> Vec<&'static str> {
        batch.iter().map(|t| t.item.0).collect()
    }

    #[test]
    fn batches_fill_from_the_highest_lane_first() {
        let t0 = Instant::now();
        let mut s = Scheduler::new([100, 100, 100], true, Duration::from_secs(2));
        s.admit(
            Lane::Bulk,
            vec![Item("b1", 40, false), Item("b2", 40, false)],
            t0,
        )
        .unwrap();
        s.admit(Lane::Stream, vec![Item("s1", 30, false)], t0)
            .unwrap();
        s.admit(Lane::Query, vec![Item("q1", 10, false)], t0)
            .unwrap();
        assert_eq!(
            names(&s.next_batch(85, t0)),
            ["q1"],
            "a query batch stays short"
        );
        assert_eq!(names(&s.next_batch(85, t0)), ["s1", "b1"]);
        assert_eq!(s.queued_tokens(Lane::Bulk), 40);
        assert_eq!(names(&s.next_batch(85, t0)), ["b2"]);
        assert!(s.is_empty());
        assert_eq!(s.total_queued(), 0);
    }

    #[test]
    fn a_starved_lower_lane_goes_first() {
        let t0 = Instant::now();
        let mut s = Scheduler::new([1000, 1000, 1000], true, Duration::from_secs(2));
        s.admit(Lane::Bulk, vec![Item("b", 50, false)], t0).unwrap();
        let t1 = t0 + Duration::from_secs(3);
        s.admit(
            Lane::Query,
            vec![Item("q1", 50, false), Item("q2", 50, false)],
            t1,
        )
        .unwrap();
        let b = s.next_batch(100, t1);
        assert_eq!(names(&b), ["b", "q1"], "bulk waited past the guard");
        assert_eq!(b[0].waited, Duration::from_secs(3));
    }

    #[test]
    fn without_lanes_one_first_come_queue() {
        let t0 = Instant::now();
        let mut s = Scheduler::new([1000, 1000, 1000], false, Duration::from_secs(2));
        s.admit(Lane::Bulk, vec![Item("b", 50, false)], t0).unwrap();
        s.admit(Lane::Query, vec![Item("q", 50, false)], t0)
            .unwrap();
        assert_eq!(names(&s.next_batch(50, t0)), ["b"]);
        assert_eq!(
            s.queued_tokens(Lane::Query),
            50,
            "admission still counts per lane"
        );
    }

    #[test]
    fn admission_refuses_over_the_lane_limit_with_a_retry_estimate() {
        let t0 = Instant::now();
        let mut s = Scheduler::new([100, 1000, 1000], true, Duration::from_secs(2));
        let big = s
            .admit(Lane::Query, vec![Item("alone", 500, false)], t0)
            .unwrap_err();
        assert!(big.too_large, "over the lane's limit by itself: never fits");
        s.admit(Lane::Query, vec![Item("first", 90, false)], t0)
            .unwrap();
        s.observe(100, Duration::from_secs(1));
        let r = s
            .admit(Lane::Query, vec![Item("more", 20, false)], t0)
            .unwrap_err();
        assert!(!r.too_large);
        assert_eq!((r.queued_tokens, r.limit), (90, 100));
        assert_eq!(
            r.retry_after,
            Duration::from_secs(2),
            "110 tokens at 100/s, rounded up"
        );
        assert!(s.check(Lane::Query, 0).is_ok(), "room left: not full");
        assert!(s.check(Lane::Query, 20).is_err());
        s.admit(Lane::Bulk, vec![Item("other lane", 10, false)], t0)
            .expect("lanes are limited apart");
    }

    #[test]
    fn cancelled_items_are_dropped_and_uncounted() {
        let t0 = Instant::now();
        let mut s = Scheduler::new([100, 100, 100], true, Duration::from_secs(2));
        s.admit(
            Lane::Stream,
            vec![Item("gone", 30, true), Item("kept", 20, false)],
            t0,
        )
        .unwrap();
        assert_eq!(names(&s.next_batch(100, t0)), ["kept"]);
        assert_eq!(s.queued_tokens(Lane::Stream), 0);
    }
}
