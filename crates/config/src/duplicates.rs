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

enum Frame {
    Mapping {
        /// Key -> line it was first written on.
        keys: HashMap<String, usize>,
        /// The key whose value is being read, if any.
        key: Option<String>,
    },
    Sequence {
        index: usize,
    },
}

#[derive(Default)]
struct Walk {
    stack: Vec<Frame>,
    found: Option<Duplicate>,
}

impl Walk {
    fn path(&self) -> String {
        let mut parts = Vec::new();
        for f in &self.stack {
            match f {
                Frame::Mapping { key: Some(k), .. } => parts.push(k.clone()),
                // `index` counts the items begun; the current one is the last.
                Frame::Sequence { index } => {
                    if let Some(last) = parts.last_mut() {
                        last.push_str(&format!("[{}]", index.saturating_sub(1)));
                    }
                }
                Frame::Mapping { key: None, .. } => {}
            }
        }
        parts.join(".")
    }

    /// A node starts at `mark`: a scalar (`Some(text)`), or an alias, a
    /// mapping or a sequence (`None`). Returns whether it is a value in a
    /// mapping (as opposed to a key, a list item or the document).
    fn node(&mut self, scalar: Option<&str>, mark: Marker) -> bool {
        let here = self.path();
        match self.stack.last_mut() {
            Some(Frame::Mapping { key: Some(_), .. }) => true,
            Some(Frame::Mapping { keys, key }) => {
                // A key. Only plain scalar keys are checked.
                let k = scalar.unwrap_or("?").to_owned();
                if scalar.is_some() {
                    if let Some(first) = keys.get(&k) {
                        if self.found.is_none() && k != "<<" {
                            self.found = Some((
                                here,
                                format!(
                                    "`{k}` is written twice (lines {first} and {}); each key may appear once",
                                    mark.line()
                                ),
                            ));
                        }
                    } else {
                        keys.insert(k.clone(), mark.line());
                    }
                }
                *key = Some(k);
                false
            }
            Some(Frame::Sequence { index }) => {
                *index += 1;
                false
            }
            None => false,
        }
    }

    /// A scalar or an alias: a node with nothing inside.
    fn leaf(&mut self, scalar: Option<&str>, mark: Marker) {
        if self.node(scalar, mark) {
            self.value_done();
        }
    }

    /// The value of the current key was read: the next node is a key.
    fn value_done(&mut self) {
        if let Some(Frame::Mapping { key, .. }) = self.stack.last_mut() {
            *key = None;
        }
    }
}

impl MarkedEventReceiver for Walk {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(v, ..) => self.leaf(Some(&v), mark),
            Event::Alias(_) => self.leaf(None, mark),
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                self.node(None, mark);
                self.stack.push(match ev {
                    Event::MappingStart(..) => Frame::Mapping {
                        keys: HashMap::new(),
                        key: None,
                    },
                    _ => Frame::Sequence { index: 0 },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                // A nested node ends: it was a value (the next node is a
                // key), a complex key (its value follows: keep the key),
                // or a list item.
                if let Some(Frame::Mapping { key: Some(k), .. }) = self.stack.last_mut() {
                    if k != "?" {
                        self.value_done();
                    } else {
                        *k = "?value".into();
                    }
                }
            }
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

    #[test]
    fn equal_keys_in_different_mappings_are_fine() {
        let yaml = "hosts:\n  web01: {address: a, user: u}\n  db01: {address: b, user: u}\nlogs:\n  web01: {path: /x, hosts: [web01]}\n";
        assert_eq!(find(yaml), None);
        assert_eq!(find("a: [1, 1, {b: 1}]\nc: &x {d: 1}\ne: *x\n"), None);
        assert_eq!(find("not: [yaml"), None);
    }
}
