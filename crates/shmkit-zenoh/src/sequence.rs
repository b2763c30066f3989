//! The importer's view of the sequence numbers: what is new, what is a
//! duplicate, and how many messages a jump skipped.
//!
//! Each exporter run is its own stream (a random id in every frame) and
//! numbers its messages without holes, so for one stream a number below
//! the next expected is a duplicate the importer drops, and a number above
//! it is a gap of exactly that many messages. A new stream id means the
//! exporter restarted (or a second one came): what the old run took from
//! its channel and never delivered cannot be counted by numbers alone, so
//! the change is counted as a restart instead.

use std::collections::HashMap;

/// What one message's number says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver it; `missed` messages of its stream were skipped just
    /// before it (0 when it came in order); `new_stream` on a stream's
    /// first message.
    Deliver {
        /// Messages skipped just before this one.
        missed: u64,
        /// The first message seen from this stream.
        new_stream: bool,
    },
    /// Already delivered (or older than what was): drop it.
    Duplicate,
}

/// Next expected number per stream.
#[derive(Debug, Default)]
pub struct Sequencer {
    next: HashMap<u64, u64>,
    /// Whether a stream's first message must be number 0 (channels: the
    /// exporter sends nothing before an importer matches, so a first
    /// number above 0 means messages were lost), or may be anything
    /// (broadcasts: positions; boards: versions).
    numbered_from_zero: bool,
}

impl Sequencer {
    /// A sequencer for streams numbered from 0 (`true`) or from anywhere.
    pub fn new(numbered_from_zero: bool) -> Self {
        Sequencer {
            next: HashMap::new(),
            numbered_from_zero,
        }
    }

    /// Judges message `seq` of `stream`.
    pub fn observe(&mut self, stream: u64, seq: u64) -> Verdict {
        let from_zero = self.numbered_from_zero;
        let mut new_stream = false;
        let next = self.next.entry(stream).or_insert_with(|| {
            new_stream = true;
            if from_zero {
                0
            } else {
                seq
            }
        });
        if seq < *next {
            return Verdict::Duplicate;
        }
        let missed = seq - *next;
        *next = seq.saturating_add(1);
        Verdict::Deliver { missed, new_stream }
    }

    /// Learns from a frame without messages that `stream`'s next message
    /// is `next` (the exporter sends one when an importer matches again
    /// after a dropped link): returns how many messages were skipped.
    pub fn mark(&mut self, stream: u64, next: u64) -> u64 {
        let expected = self
            .next
            .entry(stream)
            .or_insert(if self.numbered_from_zero { 0 } else { next });
        let missed = next.saturating_sub(*expected);
        *expected = (*expected).max(next);
        missed
    }

    /// Every stream's next expected number.
    pub fn positions(&self) -> Vec<(u64, u64)> {
        self.next.iter().map(|(&s, &n)| (s, n)).collect()
    }

    /// How many streams were seen.
    pub fn streams(&self) -> usize {
        self.next.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver(missed: u64, new_stream: bool) -> Verdict {
        Verdict::Deliver { missed, new_stream }
    }

    #[test]
    fn in_order_gaps_and_duplicates() {
        let mut s = Sequencer::new(true);
        assert_eq!(s.observe(9, 0), deliver(0, true));
        assert_eq!(s.observe(9, 1), deliver(0, false));
        assert_eq!(s.observe(9, 1), Verdict::Duplicate);
        assert_eq!(s.observe(9, 0), Verdict::Duplicate);
        assert_eq!(s.observe(9, 5), deliver(3, false));
        assert_eq!(s.observe(9, 4), Verdict::Duplicate);
        assert_eq!(s.observe(9, 6), deliver(0, false));
    }

    #[test]
    fn a_new_stream_numbered_from_zero_counts_its_missing_start() {
        let mut s = Sequencer::new(true);
        s.observe(1, 0);
        assert_eq!(s.observe(2, 3), deliver(3, true));
        assert_eq!(s.observe(1, 1), deliver(0, false));
        assert_eq!(s.streams(), 2);
    }

    #[test]
    fn a_mark_counts_what_the_dropped_link_lost() {
        let mut s = Sequencer::new(true);
        s.observe(1, 0);
        assert_eq!(s.mark(1, 1), 0);
        assert_eq!(s.mark(1, 5), 4);
        assert_eq!(s.mark(1, 3), 0, "an old mark changes nothing");
        assert_eq!(s.observe(1, 5), deliver(0, false));
    }

    #[test]
    fn positions_may_start_anywhere() {
        let mut s = Sequencer::new(false);
        assert_eq!(s.observe(1, 1000), deliver(0, true));
        assert_eq!(s.observe(1, 1002), deliver(1, false));
    }
}
