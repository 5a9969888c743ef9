//! Text a policy controls, made safe to show: [`PolicyText`].
//!
//! A policy is an untrusted tenant's code, and what it says ends up in
//! places a person reads: `configure`'s error string, a trap's message (with
//! function names from the component's own name section), the names of what
//! a component imports, a header it returned. Those reach the server log,
//! `sluice check`'s terminal, the start-up error and the `POST /reload`
//! reply. Shown raw, an ESC starts a terminal control sequence, a CR/LF
//! forges a log line, a BEL rings, and a 1 MiB message is logged whole on
//! every load.
//!
//! So such text is kept only as a `PolicyText`, whose one constructor
//! escapes it and bounds it: every byte outside printable ASCII is written
//! as an escape (`\xHH` for control bytes and invalid UTF-8, as the access
//! log does; `\u{..}` for other non-ASCII characters, which include
//! bidirectional overrides, C1 controls and line separators), `\` as `\\`,
//! and only the first [`MAX_SHOWN`] bytes are kept, with a note saying how
//! many were cut. What is shown is therefore a single line of printable
//! ASCII of bounded length, whatever the policy said.

use std::fmt;

/// Bytes of policy text kept; the rest is cut, with a note.
pub const MAX_SHOWN: usize = 1024;

/// Text from a policy, escaped and bounded (see the module comment).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PolicyText(String);

impl PolicyText {
    /// Escapes and bounds `bytes` (text or not).
    pub fn new(bytes: &[u8]) -> PolicyText {
        let (kept, cut) = if bytes.len() > MAX_SHOWN {
            (&bytes[..MAX_SHOWN], bytes.len() - MAX_SHOWN)
        } else {
            (bytes, 0)
        };
        let mut out = String::with_capacity(kept.len() + 32);
        for chunk in kept.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    ' '..='~' => out.push(c),
                    c if c.is_ascii() => out.push_str(&format!("\\x{:02X}", c as u8)),
                    c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                }
            }
            // Invalid UTF-8, or a character the cut split: byte by byte.
            for b in chunk.invalid() {
                out.push_str(&format!("\\x{b:02X}"));
            }
        }
        if cut > 0 {
            out.push_str(&format!(" [... {cut} more bytes not shown]"));
        }
        PolicyText(out)
    }

    /// The escaped text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for PolicyText {
    fn from(text: &str) -> PolicyText {
        PolicyText::new(text.as_bytes())
    }
}

impl From<String> for PolicyText {
    fn from(text: String) -> PolicyText {
        PolicyText::new(text.as_bytes())
    }
}

impl fmt::Display for PolicyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Quoted, for messages that name a value (`header name "x y" is ...`).
impl fmt::Debug for PolicyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `"` is printable ASCII and kept as it is; escaped here so the
        // quoted form cannot look like it ends early.
        write!(f, "\"{}\"", self.0.replace('"', "\\x22"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_non_ascii_and_invalid_utf8_are_escaped() {
        let t = PolicyText::new(b"a\x1b[31mred\r\nforged: line\x07\x00\x7f\\ \xff\xfe end");
        assert_eq!(
            t.as_str(),
            "a\\x1B[31mred\\x0D\\x0Aforged: line\\x07\\x00\\x7F\\\\ \\xFF\\xFE end"
        );
        // Printable but dangerous characters: a bidirectional override, a
        // C1 control (CSI), a line separator.
        let t = PolicyText::from("x\u{202e}y\u{9b}z\u{2028}é");
        assert_eq!(t.as_str(), "x\\u{202e}y\\u{9b}z\\u{2028}\\u{e9}");
        assert_eq!(format!("{:?}", PolicyText::from("a\"b")), "\"a\\x22b\"");
    }

    #[test]
    fn long_text_is_cut_with_a_note() {
        let long = "\x1b".repeat(1 << 20);
        let t = PolicyText::from(long.as_str());
        let cut = (1 << 20) - MAX_SHOWN;
        assert!(
            t.as_str()
                .ends_with(&format!(" [... {cut} more bytes not shown]")),
            "{}",
            &t.as_str()[t.as_str().len() - 60..]
        );
        // Four characters per escaped byte, and the note.
        assert!(t.as_str().len() <= 4 * MAX_SHOWN + 64);
        assert!(t.as_str().bytes().all(|b| (b' '..=b'~').contains(&b)));
        // A multi-byte character the cut splits is shown as bytes.
        let t = PolicyText::from(format!("{}é", "a".repeat(MAX_SHOWN - 1)).as_str());
        assert!(t.as_str().contains("a\\xC3 [... 1 more bytes"), "{t}");
    }
}
