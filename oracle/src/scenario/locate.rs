//! Where a field of a scenario is written: a validation error names a field path
//! (`behaviours.app.starts[1].exit.after`) and a parse error a line and column; each is
//! completed with the other, so every refusal names the file, the line and the field.

use serde_saphyr::granit_parser::{Event, Parser};

/// Every key and value of one YAML document with its path and position.
#[derive(Debug, Default)]
pub struct FieldLocations {
    /// (path, line, column), in document order; lines count from 1, columns from 1.
    nodes: Vec<(String, usize, usize)>,
}

enum Frame {
    Mapping { path: String, key: Option<String> },
    Sequence { path: String, index: usize },
}

impl Frame {
    /// The path of the node that comes next in this collection, when it is a value.
    fn child(&self) -> Option<String> {
        match self {
            Frame::Mapping { path, key } => key.as_ref().map(|key| join(path, key)),
            Frame::Sequence { path, index } => Some(format!("{path}[{index}]")),
        }
    }

    fn done_with_value(&mut self) {
        match self {
            Frame::Mapping { key, .. } => *key = None,
            Frame::Sequence { index, .. } => *index += 1,
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl FieldLocations {
    /// Reads `text` as far as it is well-formed YAML.
    pub fn of(text: &str) -> FieldLocations {
        let mut nodes = Vec::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut parser = Parser::new_from_str(text);
        while let Some(Ok((event, span))) = parser.next_event() {
            let (line, column) = (span.start.line(), span.start.col() + 1);
            let is_node = matches!(
                event,
                Event::Scalar(..)
                    | Event::MappingStart(..)
                    | Event::SequenceStart(..)
                    | Event::Alias(..)
            );
            if is_node {
                // A scalar where a mapping expects its key is the key: it names the field.
                if let (Some(Frame::Mapping { path, key }), Event::Scalar(value, ..)) =
                    (stack.last_mut(), &event)
                {
                    if key.is_none() {
                        nodes.push((join(path, value), line, column));
                        *key = Some(value.to_string());
                        continue;
                    }
                }
                let path = match stack.last() {
                    Some(frame) => frame.child().unwrap_or_default(),
                    None => String::new(),
                };
                nodes.push((path.clone(), line, column));
                match event {
                    Event::MappingStart(..) => stack.push(Frame::Mapping { path, key: None }),
                    Event::SequenceStart(..) => stack.push(Frame::Sequence { path, index: 0 }),
                    _ => {
                        if let Some(frame) = stack.last_mut() {
                            frame.done_with_value();
                        }
                    }
                }
            } else if matches!(event, Event::MappingEnd | Event::SequenceEnd) {
                stack.pop();
                if let Some(frame) = stack.last_mut() {
                    frame.done_with_value();
                }
            }
        }
        FieldLocations { nodes }
    }

    /// The line a field path is written on; for a path the text does not hold (a default,
    /// a field named by its container), the line of the nearest enclosing field written.
    pub fn line_of(&self, field: &str) -> Option<usize> {
        let mut path = field;
        loop {
            if let Some((_, line, _)) = self.nodes.iter().find(|(p, _, _)| p == path) {
                return Some(*line);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }

    /// The field whose key or value starts last at or before `line` and `column`.
    pub fn field_at(&self, line: usize, column: usize) -> Option<&str> {
        self.nodes
            .iter()
            .filter(|(path, l, c)| !path.is_empty() && (*l, *c) <= (line, column))
            .max_by_key(|(_, l, c)| (*l, *c))
            .map(|(path, _, _)| path.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name: x
pod:
  spec:
    containers:
      - name: app
        livenessProbe: {periodSeconds: 0}
behaviours:
  app:
    starts:
      - exit: {after: 1s, code: 1}
      - exit:
          after: 2s
";

    #[test]
    fn a_field_path_is_found_on_its_line_in_block_and_flow_style() {
        let locations = FieldLocations::of(TEXT);
        assert_eq!(locations.line_of("name"), Some(1));
        assert_eq!(
            locations.line_of("pod.spec.containers[0].livenessProbe.periodSeconds"),
            Some(6)
        );
        assert_eq!(
            locations.line_of("behaviours.app.starts[0].exit.code"),
            Some(10)
        );
        assert_eq!(
            locations.line_of("behaviours.app.starts[1].exit.after"),
            Some(12)
        );
        // Not written: the nearest enclosing field that is.
        assert_eq!(
            locations.line_of("pod.spec.containers[0].readinessProbe"),
            Some(5)
        );
        assert_eq!(locations.line_of("observeFor"), None);
    }

    #[test]
    fn a_position_names_the_field_written_there() {
        let locations = FieldLocations::of(TEXT);
        assert_eq!(
            locations.field_at(10, 23),
            Some("behaviours.app.starts[0].exit.after")
        );
        assert_eq!(
            locations.field_at(12, 18),
            Some("behaviours.app.starts[1].exit.after")
        );
        assert_eq!(locations.field_at(1, 7), Some("name"));
    }

    #[test]
    fn malformed_text_is_read_as_far_as_it_goes() {
        let locations = FieldLocations::of("name: x\nobserveFor: [\n");
        assert_eq!(locations.line_of("name"), Some(1));
    }
}
