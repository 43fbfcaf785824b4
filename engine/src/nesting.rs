//! How deeply a YAML or JSON text nests, measured on the text alone, so that a text nested
//! too deeply is refused before a parser spends time on it.
//!
//! The YAML parser's work on flow collections (`[`, `{`) grows with the square of their
//! depth, and both parsers build the whole event list before their own depth limits apply.
//! This scan is linear and stops at the first line past the limit. It reads the text the
//! way the parser tokenizes it: brackets count only where a token may start (not inside
//! quoted or plain scalars, comments or block scalars), and block levels are the
//! indentation columns of enclosing lines plus each `- `, `? ` or `: ` that opens a line. JSON is
//! YAML's flow style, so the same scan serves both.

/// Returns the 1-based line on which `text` first nests deeper than `limit`, if it does.
pub fn check(text: &str, limit: usize) -> Result<(), usize> {
    let mut scan = Scan::default();
    for (index, line) in lines(text).enumerate() {
        scan.line(line);
        if scan.deepest > limit {
            return Err(index + 1);
        }
    }
    Ok(())
}

/// The lines of `text` as the YAML parser breaks them: at `\n`, `\r\n`, a lone `\r`, and
/// at NEL, LS and PS. Splitting at `\n` alone would let a comment or block scalar that a lone
/// `\r` ends hide the brackets after it, which the parser then reads.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    const BREAKS: [char; 5] = ['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'];
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let Some(at) = rest.find(BREAKS) else {
            return Some(std::mem::take(&mut rest));
        };
        let line = &rest[..at];
        let after = &rest[at..];
        let width = if after.starts_with("\r\n") {
            2
        } else {
            after.chars().next().map_or(1, char::len_utf8)
        };
        rest = &after[width..];
        Some(line)
    })
}

/// A block collection: the column of its entries, and whether they are `- ` entries.
struct Level {
    column: usize,
    sequence: bool,
}

#[derive(Default)]
struct Scan {
    /// The enclosing block levels.
    blocks: Vec<Level>,
    /// How many flow collections are open.
    flow: usize,
    /// A quoted scalar open at the end of the last line: its quote character.
    quote: Option<u8>,
    /// Inside a block scalar (`|`, `>`): lines indented deeper than this are its text.
    block_scalar: Option<usize>,
    deepest: usize,
}

impl Scan {
    fn depth(&self) -> usize {
        self.blocks.len() + self.flow
    }

    fn note(&mut self) {
        self.deepest = self.deepest.max(self.depth());
    }

    fn line(&mut self, line: &str) {
        let bytes = line.as_bytes();
        let indent = bytes.iter().take_while(|&&byte| byte == b' ').count();
        let blank = bytes[indent..]
            .iter()
            .all(|byte| byte.is_ascii_whitespace());
        if let Some(parent) = self.block_scalar {
            if blank || indent > parent {
                return;
            }
            self.block_scalar = None;
        }
        let mut at = 0;
        if self.quote.is_none() && self.flow == 0 {
            if blank || bytes[indent] == b'#' {
                return;
            }
            let entry = |at: usize| {
                bytes.get(at) == Some(&b'-')
                    && bytes.get(at + 1).is_none_or(|b| matches!(b, b' ' | b'\t'))
            };
            // A sequence may sit at its parent key's column (`key:` then `- item`): there it
            // is a level of its own, inside the mapping's.
            let sequence = entry(indent);
            // Deeper levels end at this line, and so does one at its column, unless the line
            // is a `- ` entry: of a sequence there, or of one inside the mapping there.
            while self
                .blocks
                .last()
                .is_some_and(|level| level.column > indent || (level.column == indent && !sequence))
            {
                self.blocks.pop();
            }
            if !self
                .blocks
                .last()
                .is_some_and(|level| level.column == indent && level.sequence == sequence)
            {
                self.blocks.push(Level {
                    column: indent,
                    sequence,
                });
            }
            at = indent;
            // A document's start or end marker is no scalar: what follows it is read.
            if indent == 0
                && (bytes.starts_with(b"---") || bytes.starts_with(b"..."))
                && bytes.get(3).is_none_or(|byte| matches!(byte, b' ' | b'\t'))
            {
                at = 3;
            }
            // Compact nesting: `- - - x`, `? - x` or `: k: v` (the value of a complex key)
            // opens a level per indicator.
            while at + 1 < bytes.len()
                && matches!(bytes[at], b'-' | b'?' | b':')
                && bytes[at + 1] == b' '
            {
                at += 2;
                while bytes.get(at) == Some(&b' ') {
                    at += 1;
                }
                self.blocks.push(Level {
                    column: at,
                    sequence: entry(at),
                });
            }
            self.note();
        }
        self.tokens(&bytes[at..]);
    }

    /// Follows the tokens of the rest of a line.
    fn tokens(&mut self, bytes: &[u8]) {
        let blank = |at: usize| {
            bytes
                .get(at)
                .is_none_or(|byte| matches!(byte, b' ' | b'\t'))
        };
        let flow_indicator = |byte: u8| matches!(byte, b',' | b'[' | b']' | b'{' | b'}');
        let mut at = 0;
        // Where a token may start: bracket, quote and comment characters mean something
        // only there.
        let mut token_start = true;
        let mut in_plain = false;
        // Whether a key came before on this line: a block scalar after one belongs to the
        // innermost level, one without to the level around it (`- |`, or `|` alone).
        let mut after_key = false;
        while at < bytes.len() {
            let byte = bytes[at];
            if let Some(quote) = self.quote {
                match byte {
                    b'\\' if quote == b'"' => at += 1,
                    // In a single-quoted scalar `''` is a quote; a lone `'` closes it.
                    b'\'' if quote == b'\'' && bytes.get(at + 1) == Some(&b'\'') => at += 1,
                    _ if byte == quote => {
                        self.quote = None;
                        token_start = true;
                    }
                    _ => {}
                }
                at += 1;
                continue;
            }
            if matches!(byte, b' ' | b'\t') {
                if bytes.get(at + 1) == Some(&b'#') {
                    return;
                }
                if !in_plain {
                    token_start = true;
                }
                at += 1;
                continue;
            }
            if in_plain {
                let ends_value = byte == b':'
                    && (blank(at + 1)
                        || (self.flow > 0
                            && bytes.get(at + 1).is_some_and(|&b| flow_indicator(b))));
                if ends_value {
                    after_key = true;
                    in_plain = false;
                    token_start = true;
                    at += 1;
                    continue;
                }
                if self.flow > 0 && flow_indicator(byte) {
                    in_plain = false;
                    token_start = true;
                    // The indicator is read again, as a token.
                    continue;
                }
                at += 1;
                continue;
            }
            if !token_start {
                // Just after a quoted scalar or an anchor: what follows is one of the
                // indicators below or an error the parser reports.
                token_start = true;
            }
            match byte {
                b'[' | b'{' => {
                    self.flow += 1;
                    self.note();
                }
                b']' | b'}' => self.flow = self.flow.saturating_sub(1),
                b',' => {}
                b'#' => return,
                b'"' | b'\'' => self.quote = Some(byte),
                b'|' | b'>' if self.flow == 0 => {
                    let levels = self.blocks.len();
                    let parent = if after_key {
                        self.blocks.last()
                    } else {
                        self.blocks.get(levels.wrapping_sub(2))
                    };
                    self.block_scalar = Some(parent.map_or(0, |level| level.column));
                    return;
                }
                // As the parser reads them: in a flow, `:` and `?` are indicators even when
                // a value follows at once (`{"a":1}`).
                b':' if self.flow > 0 || blank(at + 1) => after_key = true,
                b'?' if self.flow > 0 || blank(at + 1) => {}
                b'-' if blank(at + 1) => {}
                b'&' | b'*' | b'!' => {
                    // An anchor, alias or tag runs to a blank (or, in a flow, to an
                    // indicator); nothing in it opens anything.
                    while at + 1 < bytes.len()
                        && !blank(at + 1)
                        && !(self.flow > 0 && flow_indicator(bytes[at + 1]))
                    {
                        at += 1;
                    }
                }
                _ => in_plain = true,
            }
            at += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    /// The depth the scan finds: the top level counts as one, as a line of a block does.
    fn depth(text: &str) -> usize {
        (0..50)
            .find(|&limit| check(text, limit).is_ok())
            .unwrap_or(usize::MAX)
    }

    #[test]
    fn brackets_and_indentation_count_where_the_parser_reads_them() {
        assert_eq!(depth("{}"), 2);
        assert_eq!(depth(r#"{"a": [[1], {"b": [2]}]}"#), 5);
        assert_eq!(depth("a:\n  b:\n    c: 1\n"), 3);
        assert_eq!(depth("a:\n  - - - 1\n"), 5);
        assert_eq!(depth("a: [[[1]]]\nb: [1]\n"), 4);
    }

    #[test]
    fn brackets_in_scalars_and_comments_do_not_count() {
        assert_eq!(depth("a: \"[[[[\"\nb: '{{{{'\n"), 1);
        assert_eq!(depth("a: it's [[[[ here\n"), 1);
        assert_eq!(depth("a: 1 # [[[[\n"), 1);
        assert_eq!(depth("a: |\n  [[[[\n  '\nb: 1\n"), 1);
        assert_eq!(depth("- |\n [[[[\n \"\n- 1\n"), 2);
        assert_eq!(depth("a:\n  - b: >-\n     [[[[\n  - 1\n"), 3);
        assert_eq!(depth(r#"["]]]]", [["\"]]"]]]"#), 4);
        assert_eq!(depth("[a, b]]]], [[1]]"), 3);
    }

    #[test]
    fn closing_brackets_in_strings_do_not_hide_deeper_nesting() {
        let text = "[\"]\", ".repeat(30) + &"]".repeat(30);
        assert_eq!(depth(&text), 31);
        let text = "['it''s ]', ".repeat(30) + &"]".repeat(30);
        assert_eq!(depth(&text), 31);
    }

    fn value_depth(value: &serde_json::Value) -> usize {
        match value {
            serde_json::Value::Array(items) => 1 + items.iter().map(value_depth).max().unwrap_or(0),
            serde_json::Value::Object(fields) => {
                1 + fields.values().map(value_depth).max().unwrap_or(0)
            }
            _ => 0,
        }
    }

    fn value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        // Strings full of the characters that open, close or end things.
        let text = "[\\[\\]{}'\"#:|>&*!,? \n-]{0,8}|[a-z]{1,4}";
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i32>().prop_map(serde_json::Value::from),
            text.prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(24, 96, 4, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(text, inner, 0..4)
                    .prop_map(|fields| serde_json::Value::Object(fields.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Whatever a value holds, the scan of its JSON or YAML text never counts less
        /// nesting than the value has: a text past the limit cannot slip through.
        #[test]
        fn the_scan_never_counts_less_than_the_value_nests(value in value()) {
            let depth = value_depth(&value);
            let texts = [
                serde_json::to_string(&value).unwrap(),
                serde_json::to_string_pretty(&value).unwrap(),
                serde_yaml_ng::to_string(&value).unwrap(),
            ];
            for text in texts {
                let counted = (0..=2 * depth + 2).find(|&limit| check(&text, limit).is_ok());
                proptest::prop_assert!(
                    counted.is_some_and(|counted| counted >= depth),
                    "{counted:?} for depth {depth}: {text}"
                );
            }
        }
    }

    #[test]
    fn nesting_after_a_document_marker_counts() {
        assert_eq!(depth("--- [[[1]]]\n"), 4);
        assert_eq!(depth("---\na: [[1]]\n...\n"), 3);
    }

    #[test]
    fn every_yaml_line_break_ends_a_comment() {
        for separator in ["\n", "\r\n", "\r", "\u{85}", "\u{2028}", "\u{2029}"] {
            let text = format!("a: 1 #{separator}b: [[[[1]]]]{separator}");
            assert_eq!(depth(&text), 5, "{separator:?}");
            let text = format!("a: |{separator}  text{separator}b: [[[[1]]]]");
            assert_eq!(depth(&text), 5, "{separator:?}");
        }
    }

    #[test]
    fn the_line_past_the_limit_is_named() {
        assert_eq!(check("a:\n  b: [[[[[[1]]]]]]\n", 4), Err(2));
    }
}
