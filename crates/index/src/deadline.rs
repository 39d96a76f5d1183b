//! Stopping a search that runs too long or whose client went away.
//!
//! A [`Deadline`] is a time and a flag anyone may raise (the HTTP API raises
//! it when the client hangs up or its request's time is over). Every
//! collector of [`crate::IndexSearcher`] runs through [`Deadline::search`]
//! as a `Bounded` collector,
//! which walks a segment's matches itself and looks at the deadline every
//! few thousand documents, so an abandoned search stops within milliseconds
//! instead of scanning a 64-million-line index to its end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::query::{Query, Weight};
use tantivy::{DocId, Searcher, SegmentOrdinal, SegmentReader, TantivyError, TERMINATED};

use crate::IndexError;

/// When a search must stop. The default never stops (the CLI's searches).
#[derive(Debug, Clone, Default)]
pub struct Deadline {
    at: Option<Instant>,
    cancelled: Option<Arc<AtomicBool>>,
}

/// What [`Bounded`] returns through tantivy when the deadline passed.
const STOPPED: &str = "rill: search stopped at its deadline";

/// Documents between two looks at the clock.
const CHECK_EVERY: u32 = 4096;

impl Deadline {
    /// A search that stops at `at`, or as soon as `cancelled` is raised.
    pub fn new(at: Instant, cancelled: Arc<AtomicBool>) -> Deadline {
        Deadline {
            at: Some(at),
            cancelled: Some(cancelled),
        }
    }

    /// Whether the search must stop now.
    pub fn passed(&self) -> bool {
        self.cancelled
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
            || self.at.is_some_and(|at| Instant::now() >= at)
    }

    /// [`IndexError::Stopped`] once the deadline passed.
    pub(crate) fn check(&self) -> Result<(), IndexError> {
        if self.passed() {
            Err(IndexError::Stopped)
        } else {
            Ok(())
        }
    }

    /// `searcher.search(query, inner)`, stopped once the deadline passed.
    pub(crate) fn search<C: Collector>(
        &self,
        searcher: &Searcher,
        query: &dyn Query,
        inner: C,
    ) -> Result<C::Fruit, IndexError> {
        searcher
            .search(
                query,
                &Bounded {
                    inner,
                    deadline: self,
                },
            )
            .map_err(|e| match e {
                TantivyError::InternalError(m) if m == STOPPED => IndexError::Stopped,
                e => IndexError::Tantivy(e),
            })
    }

    /// The stop as tantivy carries it out of a collector.
    fn check_collecting(&self) -> tantivy::Result<()> {
        if self.passed() {
            Err(TantivyError::InternalError(STOPPED.into()))
        } else {
            Ok(())
        }
    }
}

/// `inner`, stopping with an error once `deadline` passed.
struct Bounded<'a, C> {
    inner: C,
    deadline: &'a Deadline,
}

impl<C: Collector> Collector for Bounded<'_, C> {
    type Fruit = C::Fruit;
    type Child = C::Child;

    fn for_segment(
        &self,
        segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<Self::Child> {
        self.inner.for_segment(segment_local_id, segment)
    }

    fn requires_scoring(&self) -> bool {
        self.inner.requires_scoring()
    }

    fn merge_fruits(
        &self,
        fruits: Vec<<Self::Child as SegmentCollector>::Fruit>,
    ) -> tantivy::Result<Self::Fruit> {
        self.inner.merge_fruits(fruits)
    }

    fn collect_segment(
        &self,
        weight: &dyn Weight,
        segment_ord: u32,
        reader: &SegmentReader,
    ) -> tantivy::Result<<Self::Child as SegmentCollector>::Fruit> {
        self.deadline.check_collecting()?;
        let mut child = self.inner.for_segment(segment_ord, reader)?;
        let scoring = self.inner.requires_scoring();
        let alive = reader.alive_bitset();
        let mut scorer = weight.scorer(reader, 1.0)?;
        let mut doc: DocId = scorer.doc();
        let mut n: u32 = 0;
        while doc != TERMINATED {
            if alive.is_none_or(|a| a.is_alive(doc)) {
                let score = if scoring { scorer.score() } else { 0.0 };
                child.collect(doc, score);
            }
            n = n.wrapping_add(1);
            if n.is_multiple_of(CHECK_EVERY) {
                self.deadline.check_collecting()?;
            }
            doc = scorer.advance();
        }
        Ok(child.harvest())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_deadline_passes_at_its_time_or_when_cancelled() {
        assert!(!Deadline::default().passed());
        let flag = Arc::new(AtomicBool::new(false));
        let later = Deadline::new(Instant::now() + Duration::from_secs(60), flag.clone());
        assert!(!later.passed());
        flag.store(true, Ordering::Relaxed);
        assert!(later.passed());
        let past = Deadline::new(Instant::now(), Arc::new(AtomicBool::new(false)));
        assert!(past.passed());
        assert!(matches!(past.check(), Err(IndexError::Stopped)));
    }
}
