//! Match counts per time bucket, read from the `ts` fast field (no stored
//! documents are touched, so a histogram over millions of events is quick).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

/// One bucket: events with `start <= ts < start + width`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub count: u64,
}

/// Refuses to draw more bars than this.
pub const MAX_BUCKETS: i64 = 10_000;

/// Counts per bucket start (microseconds since the epoch).
pub struct TsHistogram {
    pub width_micros: i64,
}

pub struct SegmentHistogram {
    ts: Option<Column<tantivy::DateTime>>,
    width: i64,
    counts: BTreeMap<i64, u64>,
}

impl Collector for TsHistogram {
    type Fruit = BTreeMap<i64, u64>;
    type Child = SegmentHistogram;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<SegmentHistogram> {
        Ok(SegmentHistogram {
            ts: segment.fast_fields().date("ts").ok(),
            width: self.width_micros,
            counts: BTreeMap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<BTreeMap<i64, u64>>) -> tantivy::Result<BTreeMap<i64, u64>> {
        let mut all = BTreeMap::new();
        for f in fruits {
            for (k, v) in f {
                *all.entry(k).or_insert(0) += v;
            }
        }
        Ok(all)
    }
}

impl SegmentCollector for SegmentHistogram {
    type Fruit = BTreeMap<i64, u64>;

    fn collect(&mut self, doc: DocId, _: Score) {
        if let Some(t) = self.ts.as_ref().and_then(|c| c.first(doc)) {
            let m = t.into_timestamp_micros();
            *self
                .counts
                .entry(m.div_euclid(self.width) * self.width)
                .or_insert(0) += 1;
        }
    }

    fn harvest(self) -> BTreeMap<i64, u64> {
        self.counts
    }
}

/// Every bucket from the first to the last (or from `since` to `until`),
/// empty ones included, so the chart's time axis has no holes.
pub fn fill(
    counts: &BTreeMap<i64, u64>,
    width_micros: i64,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<Vec<Bucket>, String> {
    let floor = |m: i64| m.div_euclid(width_micros) * width_micros;
    let first = since
        .map(|s| floor(s.timestamp_micros()))
        .or_else(|| counts.keys().next().copied());
    let last = until
        .map(|u| floor(u.timestamp_micros() - 1))
        .or_else(|| counts.keys().next_back().copied());
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(Vec::new());
    };
    if last < first {
        return Ok(Vec::new());
    }
    // Both ends come from the user: a span of 500,000 years overflows.
    let n = last
        .checked_sub(first)
        .map_or(i64::MAX, |d| d / width_micros + 1);
    if n > MAX_BUCKETS {
        return Err(format!(
            "{n} buckets; expected at most {MAX_BUCKETS}: use a larger bucket or a narrower --since/--until"
        ));
    }
    Ok((0..n)
        .map(|i| {
            let start = first + i * width_micros;
            Bucket {
                start: Utc.timestamp_micros(start).single().unwrap_or_default(),
                count: counts.get(&start).copied().unwrap_or(0),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_buckets_are_filled_and_bounds_respected() {
        let min = 60_000_000;
        let counts: BTreeMap<i64, u64> = [(0, 2), (3 * min, 5)].into_iter().collect();
        let b = fill(&counts, min, None, None).unwrap();
        assert_eq!(b.iter().map(|b| b.count).collect::<Vec<_>>(), [2, 0, 0, 5]);
        let since = Utc.timestamp_micros(-min).unwrap();
        let until = Utc.timestamp_micros(2 * min).unwrap();
        let b = fill(&counts, min, Some(since), Some(until)).unwrap();
        assert_eq!(b.iter().map(|b| b.count).collect::<Vec<_>>(), [0, 2, 0]);
        assert!(fill(&counts, 1, None, None)
            .unwrap_err()
            .contains("buckets; expected at most"));
        assert!(fill(&BTreeMap::new(), min, None, None).unwrap().is_empty());
        // The widest range chrono holds, in microseconds: refused, no overflow.
        let (lo, hi) = (DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
        assert!(fill(&counts, 1, Some(lo), Some(hi))
            .unwrap_err()
            .contains("expected at most"));
    }
}
