//! Many virsh commands in one process: virsh's own tokenizer rules for
//! quoting, and marker lines that line the outputs up with the commands.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// Quotes one word for virsh's command-string tokenizer, which (unlike a
/// single argv element) splits on blanks, `;` and `#` and interprets quotes
/// and backslashes. A backslash before every ASCII character that is not a
/// letter or digit makes each of them literal; non-ASCII bytes pass as they
/// are, since the tokenizer never treats them specially.
pub fn quote(word: &str) -> String {
    let mut quoted = String::with_capacity(word.len() * 2);
    for c in word.chars() {
        if c.is_ascii() && !c.is_ascii_alphanumeric() {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted
}

/// A sequence of virsh commands, run as one `virsh "c1; echo M0; c2; …"`.
///
/// A failing command prints to stderr and the batch goes on, so each
/// command's stdout is the text between two markers. The marker carries a
/// random nonce: guest-controlled text (an agent's OS name, say) must not
/// be able to forge a section boundary.
pub struct Batch {
    nonce: String,
    script: String,
    len: usize,
}

impl Batch {
    pub fn new() -> Self {
        let nonce = RandomState::new().hash_one(std::process::id());
        Batch {
            nonce: format!("{nonce:016x}"),
            script: String::new(),
            len: 0,
        }
    }

    /// Appends one command; every word is quoted.
    pub fn push<S: AsRef<str>>(&mut self, words: &[S]) {
        let command = words
            .iter()
            .map(|w| quote(w.as_ref()))
            .collect::<Vec<_>>()
            .join(" ");
        self.script
            .push_str(&format!("{command} ; echo {} ; ", self.marker(self.len)));
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The single argument to hand to virsh.
    pub fn script(&self) -> &str {
        &self.script
    }

    fn marker(&self, index: usize) -> String {
        format!("@@dismount-iso-qemu-{}-{index}", self.nonce)
    }

    /// Splits the batch's stdout into one section per command, in order.
    /// A section is `None` when its marker never appeared (virsh stopped
    /// early), and empty when the command printed nothing (it failed).
    pub fn split<'a>(&self, stdout: &'a str) -> Vec<Option<&'a str>> {
        let mut sections = Vec::with_capacity(self.len);
        let mut rest = stdout;
        for index in 0..self.len {
            let marker = format!("{}\n", self.marker(index));
            match find_line(rest, &marker) {
                Some(at) => {
                    sections.push(Some(&rest[..at]));
                    rest = &rest[at + marker.len()..];
                }
                None => {
                    sections.push(None);
                    rest = "";
                }
            }
        }
        sections
    }
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

/// Byte offset of `line` where it stands as a whole line in `text`.
fn find_line(text: &str, line: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = text[from..].find(line) {
        let at = from + found;
        if at == 0 || text.as_bytes()[at - 1] == b'\n' {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_every_ascii_punctuation_and_blank() {
        assert_eq!(quote("a b"), r"a\ b");
        assert_eq!(quote("x;y#z"), r"x\;y\#z");
        assert_eq!(quote(r#"b'q "x"#), r#"b\'q\ \"x"#);
        assert_eq!(quote("-db"), r"\-db");
        assert_eq!(quote("Ünïcode"), "Ünïcode");
    }

    #[test]
    fn split_lines_sections_up_and_marks_missing_ones() {
        let mut batch = Batch::new();
        batch.push(&["dominfo", "--domain", "a"]);
        batch.push(&["dominfo", "--domain", "b"]);
        batch.push(&["dominfo", "--domain", "c"]);
        let stdout = format!("A\n{}\n{}\nC1\nC2\n", batch.marker(0), batch.marker(1));
        assert_eq!(
            batch.split(&stdout),
            vec![Some("A\n"), Some(""), None],
            "b failed (empty), c never finished (None)"
        );
    }

    #[test]
    fn a_forged_marker_inside_a_line_is_not_a_boundary() {
        let mut batch = Batch::new();
        batch.push(&["x"]);
        let stdout = format!("os: {m}\n{m}\n", m = batch.marker(0));
        assert_eq!(
            batch.split(&stdout),
            vec![Some(&stdout[..stdout.len() - batch.marker(0).len() - 1])]
        );
    }
}
