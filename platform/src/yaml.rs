//! Positions in YAML files, so every configuration error can name file, line and column.
//!
//! Syntax errors, unknown keys and wrong types come located from the deserializer
//! ([`located`]); errors found after deserialization (bad references, impossible combinations,
//! secrets in a file) are located through [`Marks`], a map from dotted key path to position.

use std::collections::HashMap;

/// A configuration file that cannot be read, or an error at a place in it (every YAML file the
/// engine reads reports its errors so).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FileError {
    #[error("{file}: cannot read: {reason}")]
    Read { file: String, reason: String },
    #[error("{file}:{line}:{column}: {message}")]
    At {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
}

impl FileError {
    /// A deserializer error of `file`, at its line and column.
    pub fn deserializing(file: &str, e: &serde_yaml_ng::Error) -> Self {
        let (line, column, message) = located(e);
        Self::At {
            file: file.to_owned(),
            line,
            column,
            message,
        }
    }
}

/// Line, column and message of a deserializer error; the message without the trailing
/// " at line L column C" (the caller prints the position itself).
pub fn located(e: &serde_yaml_ng::Error) -> (usize, usize, String) {
    let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
    let message = e.to_string();
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(m, _)| m)
        .to_owned();
    (line, column, message)
}

/// Positions of every node of a YAML document by dotted path (`a.b.0.c`), for errors found after
/// deserialization. A scalar's path points at its value; a mapping's or a list's at its key.
pub struct Marks {
    at: HashMap<String, (usize, usize)>,
}

impl Marks {
    pub fn of(text: &str) -> Self {
        use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
        use yaml_rust2::scanner::Marker;

        enum Frame {
            Map { path: String, key: Option<String> },
            Seq { path: String, index: usize },
        }
        struct Recv {
            stack: Vec<Frame>,
            at: HashMap<String, (usize, usize)>,
        }
        impl Recv {
            /// The path of the node starting now, advancing the parent.
            fn node_path(&mut self, scalar_key: Option<&str>) -> Option<String> {
                match self.stack.last_mut() {
                    None => Some(String::new()),
                    Some(Frame::Map { path, key }) => match key.take() {
                        Some(k) => Some(join(path, &k)),
                        None => {
                            *key = scalar_key.map(str::to_owned);
                            None
                        }
                    },
                    Some(Frame::Seq { path, index }) => {
                        let p = join(path, &index.to_string());
                        *index += 1;
                        Some(p)
                    }
                }
            }
        }
        fn join(base: &str, k: &str) -> String {
            if base.is_empty() {
                k.to_owned()
            } else {
                format!("{base}.{k}")
            }
        }
        impl MarkedEventReceiver for Recv {
            fn on_event(&mut self, ev: Event, mark: Marker) {
                let pos = (mark.line(), mark.col() + 1);
                match ev {
                    Event::Scalar(value, ..) => {
                        let is_key =
                            matches!(self.stack.last(), Some(Frame::Map { key: None, .. }));
                        if is_key {
                            self.node_path(Some(&value));
                            if let Some(Frame::Map { path, .. }) = self.stack.last() {
                                self.at.entry(join(path, &value)).or_insert(pos);
                            }
                        } else if let Some(p) = self.node_path(None) {
                            self.at.insert(p, pos);
                        }
                    }
                    Event::MappingStart(..) | Event::SequenceStart(..) => {
                        let path = self.node_path(None).unwrap_or_default();
                        self.at.entry(path.clone()).or_insert(pos);
                        self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                            Frame::Map { path, key: None }
                        } else {
                            Frame::Seq { path, index: 0 }
                        });
                    }
                    Event::MappingEnd | Event::SequenceEnd => {
                        self.stack.pop();
                    }
                    _ => {}
                }
            }
        }
        let mut recv = Recv {
            stack: Vec::new(),
            at: HashMap::new(),
        };
        let _ = Parser::new_from_str(text).load(&mut recv, false);
        Self { at: recv.at }
    }

    /// The position of `path`, or of its nearest ancestor that exists.
    pub fn find(&self, path: &str) -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(pos) = self.at.get(p) {
                return *pos;
            }
            match p.rsplit_once('.') {
                Some((parent, _)) => p = parent,
                None => return self.at.get("").copied().unwrap_or((1, 1)),
            }
        }
    }

    /// Every path of the document with its position, in document order.
    pub fn paths(&self) -> Vec<(&str, (usize, usize))> {
        let mut all: Vec<_> = self.at.iter().map(|(p, pos)| (p.as_str(), *pos)).collect();
        all.sort_by_key(|(p, pos)| (*pos, p.len()));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_keys_and_list_items_are_found_at_their_line_and_column() {
        let marks = Marks::of("a:\n  b: 1\n  list:\n    - x: 2\n");
        assert_eq!(marks.find("a.b"), (2, 6));
        assert_eq!(marks.find("a.list"), (3, 3));
        assert_eq!(marks.find("a.list.0.x"), (4, 10));
        // A path that does not exist falls back to its nearest ancestor.
        assert_eq!(marks.find("a.missing"), (1, 1));
    }
}
