//! Keys written twice in one mapping.
//!
//! serde keeps the last of two equal keys silently, so a second `web01:`
//! under `hosts:` would replace the first without a word. This pass reads
//! the YAML's events with their positions before serde does and refuses a
//! repeated key, naming both lines. A file that does not parse is left to
//! serde, whose error says why.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A repeated key: the dotted path of its mapping, and the message.
pub type Duplicate = (String, String);

/// Where a mapping is between its keys and values.
enum Slot {
    /// The next node is a key.
    Key,
    /// The next node is the value of this key (a plain scalar key: its
    /// text, for the path).
    Value(String),
    /// A mapping or sequence used as a key is being read; its value follows.
    ComplexKey,
    /// The next node is the value of a key that was not a plain scalar
    /// (an alias, a mapping or a sequence): not checked.
    OtherValue,
}

enum Frame {
    Mapping {
        /// Key -> line it was first written on.
        keys: HashMap<String, usize>,
        slot: Slot,
    },
    Sequence {
        /// Items begun so far; the current one is the last.
        items: usize,
    },
}

#[derive(Default)]
struct Walk {
    stack: Vec<Frame>,
    found: Option<Duplicate>,
}

impl Walk {
    fn path(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for f in &self.stack {
            match f {
                Frame::Mapping {
                    slot: Slot::Value(k),
                    ..
                } => parts.push(k.clone()),
                Frame::Mapping { .. } => {}
                Frame::Sequence { items } => {
                    let i = format!("[{}]", items.saturating_sub(1));
                    match parts.last_mut() {
                        Some(last) => last.push_str(&i),
                        None => parts.push(i),
                    }
                }
            }
        }
        parts.join(".")
    }

    /// A node begins at `mark`: a plain scalar (`Some(text)`), or an alias,
    /// a mapping or a sequence (`None`). `leaf` says it has nothing inside
    /// (a scalar or an alias), so it also ends here.
    fn node(&mut self, scalar: Option<&str>, leaf: bool, mark: Marker) {
        let expects_key = matches!(
            self.stack.last(),
            Some(Frame::Mapping {
                slot: Slot::Key,
                ..
            })
        );
        if let (true, Some(k)) = (expects_key, scalar) {
            self.key(k, mark.line());
        }
        match self.stack.last_mut() {
            Some(Frame::Mapping { slot, .. }) => {
                let next = match (&*slot, scalar) {
                    (Slot::Key, Some(k)) => Some(Slot::Value(k.to_owned())),
                    (Slot::Key, None) if leaf => Some(Slot::OtherValue),
                    (Slot::Key, None) => Some(Slot::ComplexKey),
                    (Slot::Value(_) | Slot::OtherValue, _) if leaf => Some(Slot::Key),
                    _ => None,
                };
                if let Some(next) = next {
                    *slot = next;
                }
            }
            Some(Frame::Sequence { items }) => *items += 1,
            None => {}
        }
    }

    /// Plain scalar key `k` on `line` in the innermost mapping: remembered,
    /// or the first duplicate found (merge keys `<<` may repeat).
    fn key(&mut self, k: &str, line: usize) {
        let Some(Frame::Mapping { keys, .. }) = self.stack.last_mut() else {
            return;
        };
        match keys.get(k).copied() {
            None => {
                keys.insert(k.to_owned(), line);
            }
            Some(first) if self.found.is_none() && k != "<<" => {
                self.found = Some((
                    self.path(),
                    format!(
                        "`{k}` is written twice (lines {first} and {line}); each key may appear once"
                    ),
                ));
            }
            Some(_) => {}
        }
    }

    /// A mapping or sequence ended: if it was a value, its mapping expects
    /// a key again; if it was a key (complex), its value follows.
    fn end(&mut self) {
        self.stack.pop();
        if let Some(Frame::Mapping { slot, .. }) = self.stack.last_mut() {
            *slot = match slot {
                Slot::ComplexKey => Slot::OtherValue,
                Slot::Key | Slot::Value(_) | Slot::OtherValue => Slot::Key,
            };
        }
    }
}

impl MarkedEventReceiver for Walk {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(v, ..) => self.node(Some(&v), true, mark),
            Event::Alias(_) => self.node(None, true, mark),
            Event::MappingStart(..) => {
                self.node(None, false, mark);
                self.stack.push(Frame::Mapping {
                    keys: HashMap::new(),
                    slot: Slot::Key,
                });
            }
            Event::SequenceStart(..) => {
                self.node(None, false, mark);
                self.stack.push(Frame::Sequence { items: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => self.end(),
            Event::DocumentStart => self.stack.clear(),
            _ => {}
        }
    }
}

/// The first key written twice in one mapping of `text`, if any.
pub fn find(text: &str) -> Option<Duplicate> {
    let mut walk = Walk::default();
    let mut parser = Parser::new_from_str(text);
    // A syntax error is serde_yaml's to report.
    let _ = parser.load(&mut walk, true);
    walk.found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_is_found_with_both_lines() {
        let yaml = "hosts:\n  web01: {address: a}\n  db01:\n    address: b\n  web01:\n    address: c\nlogs: {}\n";
        assert_eq!(
            find(yaml),
            Some((
                "hosts".into(),
                "`web01` is written twice (lines 2 and 5); each key may appear once".into()
            ))
        );
        let nested = "logs:\n  x:\n    path: /a\n    hosts: [a, b]\n    path: /b\n";
        assert_eq!(find(nested).unwrap().0, "logs.x");
        let flow = "hosts: {a: {user: u, user: v}}";
        assert_eq!(find(flow).unwrap().0, "hosts.a");
        let in_list = "x:\n  - {a: 1}\n  - {a: 1, a: 2}\n";
        assert_eq!(find(in_list).unwrap().0, "x[1]");
    }

    /// Review: a `"?"` key or an alias as a key with a mapping value
    /// shifted the key/value tracking by one.
    #[test]
    fn odd_keys_keep_keys_and_values_apart() {
        assert_eq!(find("\"?\": {x: 1}\na: 1\nb: 1\nc: 2\n"), None);
        assert_eq!(find("k: &k x\n*k : {y: 1}\na: 1\nb: 1\n"), None);
        assert_eq!(find("? {a: 1}\n: {b: 1}\nc: 1\nd: 1\n"), None);
        assert_eq!(find("? [a, b]\n: v\nc: 1\nc: 2\n").unwrap().0, "");
        let two_docs = "a: 1\n---\na: 2\n";
        assert_eq!(find(two_docs), None);
    }

    #[test]
    fn equal_keys_in_different_mappings_are_fine() {
        let yaml = "hosts:\n  web01: {address: a, user: u}\n  db01: {address: b, user: u}\nlogs:\n  web01: {path: /x, hosts: [web01]}\n";
        assert_eq!(find(yaml), None);
        assert_eq!(find("a: [1, 1, {b: 1}]\nc: &x {d: 1}\ne: *x\n"), None);
        assert_eq!(find("not: [yaml"), None);
    }
}
