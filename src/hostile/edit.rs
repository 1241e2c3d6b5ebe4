//! Edits of any scenario text, and the fuzz target's input format.

use super::*;

/// A value a mutation writes in place of another: out of range, empty, or of another type.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostileValue {
    Int(HostileInt),
    Duration(HostileDuration),
    EmptyString,
    Null,
    EmptyList,
    EmptyMap,
}

impl HostileValue {
    pub fn render(self) -> String {
        match self {
            HostileValue::Int(n) => n.render(),
            HostileValue::Duration(d) => d.render(),
            HostileValue::EmptyString => "\"\"".to_owned(),
            HostileValue::Null => "null".to_owned(),
            HostileValue::EmptyList => "[]".to_owned(),
            HostileValue::EmptyMap => "{}".to_owned(),
        }
    }
}

/// One edit of scenario text, line by line. Line numbers wrap around the text's length,
/// so every edit applies to any text.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextMutation {
    DropLine(u16),
    DuplicateLine(u16),
    /// Replaces a scalar of the line: the value after its last `: ` (a `key: value` line,
    /// or a flow mapping's last entry), else the text after a list's `- `.
    ReplaceValue(u16, HostileValue),
    /// Replaces the n-th scalar value anywhere in the text (counting every `key: value`
    /// of block and flow mappings).
    ReplaceNthValue(u16, HostileValue),
    /// Exchanges the values of two `key: value` lines.
    SwapValues(u16, u16),
}

/// Where the n-th value of the text lies, counting the value after every `: ` that ends
/// at `,`, `}`, `]` or the line's end.
fn value_spans(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut at = 0;
    while let Some(found) = text[at..].find(": ") {
        let start = at + found + 2;
        let mut end = start;
        while end < bytes.len() && !matches!(bytes[end], b',' | b'}' | b']' | b'\n') {
            end += 1;
        }
        // A nested mapping or list begins here: its values are counted on their own.
        if end > start && !matches!(bytes[start], b'{' | b'[') {
            spans.push((start, end));
        }
        at = start;
    }
    spans
}

impl TextMutation {
    /// Applies the edit; text without lines is left as it is.
    pub fn apply(self, text: &str) -> String {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.is_empty() {
            return text.to_owned();
        }
        let count = lines.len();
        let pick = |n: u16| usize::from(n) % count;
        match self {
            TextMutation::DropLine(n) => {
                lines.remove(pick(n));
            }
            TextMutation::DuplicateLine(n) => {
                let index = pick(n);
                let copy = lines[index].clone();
                lines.insert(index, copy);
            }
            TextMutation::ReplaceValue(n, value) => {
                let index = pick(n);
                let current = &lines[index];
                let spans = value_spans(current);
                let replaced = match spans.last() {
                    Some(&(start, end)) => {
                        format!("{}{}{}", &current[..start], value.render(), &current[end..])
                    }
                    None => match current.find("- ") {
                        Some(dash) => format!("{}{}", &current[..dash + 2], value.render()),
                        None => current.clone(),
                    },
                };
                lines[index] = replaced;
            }
            TextMutation::ReplaceNthValue(n, value) => {
                let spans = value_spans(text);
                if spans.is_empty() {
                    return text.to_owned();
                }
                let (start, end) = spans[usize::from(n) % spans.len()];
                return format!("{}{}{}", &text[..start], value.render(), &text[end..]);
            }
            TextMutation::SwapValues(a, b) => {
                let with_values: Vec<usize> = (0..count)
                    .filter(|&i| !value_spans(&lines[i]).is_empty())
                    .collect();
                if with_values.len() < 2 {
                    return text.to_owned();
                }
                let first = with_values[usize::from(a) % with_values.len()];
                let second = with_values[usize::from(b) % with_values.len()];
                let value_of = |line: &str| {
                    value_spans(line)
                        .last()
                        .map(|&(start, end)| line[start..end].to_owned())
                        .unwrap_or_default()
                };
                let (value_a, value_b) = (value_of(&lines[first]), value_of(&lines[second]));
                let put = |line: &str, value: &str| match value_spans(line).last() {
                    Some(&(start, end)) => format!("{}{value}{}", &line[..start], &line[end..]),
                    None => line.to_owned(),
                };
                lines[first] = put(&lines[first], &value_b);
                lines[second] = put(&lines[second], &value_a);
            }
        }
        let mut out = lines.join("\n");
        out.push('\n');
        out
    }
}

/// Applies each edit in turn.
pub fn mutate(text: &str, mutations: &[TextMutation]) -> String {
    mutations
        .iter()
        .fold(text.to_owned(), |text, mutation| mutation.apply(&text))
}

/// At most this many edits are applied to one text.
const MAX_MUTATIONS: usize = 4;

/// The fuzz target's input: scenario text, a NUL byte, and the bytes that choose the
/// edits of that text. Input that starts with NUL has no text: its bytes choose a
/// [`HostileScenario`] first, rendered, then the edits. A file without NUL is the text
/// alone: the suite files are inputs as they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuzzInput {
    pub base: FuzzBase,
    pub mutations: Vec<TextMutation>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FuzzBase {
    /// Scenario text as given (invalid UTF-8 replaced).
    Text(String),
    Structured(Box<HostileScenario>),
}

impl FuzzInput {
    /// Reads fuzz bytes; never fails: a structure that runs out of bytes takes its
    /// smallest values.
    pub fn from_bytes(data: &[u8]) -> FuzzInput {
        let (text, rest) = match data.iter().position(|&b| b == 0) {
            Some(nul) => (&data[..nul], &data[nul + 1..]),
            None => (data, &[][..]),
        };
        let mut choices = Unstructured::new(rest);
        let base = if text.is_empty() && data.first() == Some(&0) {
            // Running out of bytes gives the smallest values rather than an error; any
            // other error leaves no scenario to render.
            match HostileScenario::arbitrary(&mut choices) {
                Ok(scenario) => FuzzBase::Structured(Box::new(scenario)),
                Err(_) => FuzzBase::Text(String::new()),
            }
        } else {
            FuzzBase::Text(String::from_utf8_lossy(text).into_owned())
        };
        let mut mutations = Vec::new();
        while mutations.len() < MAX_MUTATIONS && !choices.is_empty() {
            match TextMutation::arbitrary(&mut choices) {
                Ok(mutation) => mutations.push(mutation),
                Err(_) => break,
            }
        }
        FuzzInput { base, mutations }
    }

    /// The scenario text this input stands for.
    pub fn text(&self) -> String {
        let base = match &self.base {
            FuzzBase::Text(text) => text.clone(),
            FuzzBase::Structured(scenario) => scenario.render(),
        };
        mutate(&base, &self.mutations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podcheck_oracle::Scenario;

    #[test]
    fn a_suite_file_is_a_fuzz_input_as_it_is() {
        let text = "name: x\nobserveFor: 10s\n";
        let input = FuzzInput::from_bytes(text.as_bytes());
        assert_eq!(input.base, FuzzBase::Text(text.to_owned()));
        assert!(input.mutations.is_empty());
        assert_eq!(input.text(), text);
    }

    #[test]
    fn replacing_a_value_keeps_the_key_and_the_rest_of_the_line() {
        let edit = |mutation: TextMutation, text: &str| mutation.apply(text);
        let huge = HostileValue::Duration(HostileDuration::Huge);
        assert_eq!(
            edit(TextMutation::ReplaceValue(0, huge), "observeFor: 10s\n"),
            "observeFor: 999999999999999999992s\n"
        );
        assert_eq!(
            edit(
                TextMutation::ReplaceValue(0, HostileValue::Int(HostileInt::MinusOne)),
                "  then: {exit: {after: 1s, code: 1}}\n"
            ),
            "  then: {exit: {after: 1s, code: -1}}\n"
        );
        assert_eq!(
            edit(
                TextMutation::ReplaceNthValue(1, huge),
                "a: {after: 1s, code: 1}\n"
            ),
            "a: {after: 1s, code: 999999999999999999992s}\n"
        );
        assert_eq!(
            edit(TextMutation::SwapValues(0, 1), "a: 1\nb: 2\n"),
            "a: 2\nb: 1\n"
        );
        assert_eq!(edit(TextMutation::DropLine(3), "a: 1\nb: 2\n"), "a: 1\n");
        assert_eq!(
            edit(TextMutation::DuplicateLine(0), "a: 1\nb: 2\n"),
            "a: 1\na: 1\nb: 2\n"
        );
    }

    /// The structure is worth fuzzing only if much of what it renders is a scenario the
    /// oracle reads: the pools of names make containers, behaviours and probes meet.
    #[test]
    fn rendered_scenarios_are_often_valid() {
        let mut state = 0x5eed_u64;
        let mut valid = 0;
        let total = 400;
        for _ in 0..total {
            let length = 20 + (state % 200) as usize;
            let bytes: Vec<u8> = (0..length)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            let scenario = HostileScenario::arbitrary(&mut Unstructured::new(&bytes))
                .expect("running out of bytes gives the smallest values");
            if Scenario::from_yaml("hostile.yaml", &scenario.render()).is_ok() {
                valid += 1;
            }
        }
        assert!(
            valid * 50 >= total,
            "{valid} of {total} rendered scenarios are valid"
        );
    }
}
