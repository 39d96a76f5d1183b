//! Where a query's terms occur in a body: the body is tokenized the way it
//! was indexed, and every token that is one of the query's `body` terms is
//! marked. Byte ranges, so terminals and HTTP clients can mark them.

use std::collections::HashSet;
use std::ops::Range;

use tantivy::query::Query;
use tantivy::schema::Field;
use tantivy::tokenizer::TextAnalyzer;

pub struct Highlighter {
    terms: HashSet<String>,
    analyzer: TextAnalyzer,
}

impl Highlighter {
    pub fn new(query: &dyn Query, body: Field, analyzer: TextAnalyzer) -> Highlighter {
        let mut terms = HashSet::new();
        query.query_terms(&mut |term, _| {
            if term.field() == body {
                if let Some(t) = term.value().as_str() {
                    terms.insert(t.to_owned());
                }
            }
        });
        Highlighter { terms, analyzer }
    }

    /// Byte ranges of matched terms in `text`, in order.
    pub fn ranges(&mut self, text: &str) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        if self.terms.is_empty() {
            return out;
        }
        let mut stream = self.analyzer.token_stream(text);
        while stream.advance() {
            let t = stream.token();
            if self.terms.contains(&t.text) {
                out.push(t.offset_from..t.offset_to);
            }
        }
        out
    }
}

/// `text` with each range wrapped in `open` and `close`.
pub fn mark(text: &str, ranges: &[Range<usize>], open: &str, close: &str) -> String {
    let mut out = String::with_capacity(text.len() + ranges.len() * (open.len() + close.len()));
    let mut at = 0;
    for r in ranges {
        if r.start < at || r.end > text.len() {
            continue;
        }
        out.push_str(&text[at..r.start]);
        out.push_str(open);
        out.push_str(&text[r.clone()]);
        out.push_str(close);
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_wraps_ranges() {
        assert_eq!(
            mark("GET /a 500", &[0..3, 7..10], "[", "]"),
            "[GET] /a [500]"
        );
        assert_eq!(mark("x", &[], "[", "]"), "x");
    }
}
