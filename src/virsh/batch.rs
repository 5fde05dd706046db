//! Many virsh commands in one process: virsh's own tokenizer rules for
//! quoting, and marker lines that line the outputs up with the commands.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::ops::Range;

use super::pipes::find_line;

/// Quotes one word for virsh's command-string tokenizer, which (unlike a
/// single argv element) splits on blanks, `;` and `#` and interprets quotes
/// and backslashes. A word of letters, digits and `-_./:@=,+` alone passes
/// as it is: the tokenizer acts on none of them, and a session reads every
/// byte of its line one at a time. In any other word a backslash goes
/// before every ASCII character that is not a letter or digit, which makes
/// each of them literal; non-ASCII bytes pass as they are, since the
/// tokenizer never treats them specially. A newline is the exception: a
/// backslash before it continues the line (the newline is dropped), so it
/// goes in single quotes.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@=,+".contains(c));
    if plain {
        return word.to_owned();
    }
    let mut quoted = String::with_capacity(word.len() * 2);
    for c in word.chars() {
        if c == '\n' {
            quoted.push_str("'\n'");
            continue;
        }
        if c.is_ascii() && !c.is_ascii_alphanumeric() {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted
}

/// Commands as one line of virsh's command language: quoted words, the
/// commands separated by ` ; `.
pub fn script(commands: &[Vec<String>]) -> String {
    commands
        .iter()
        .map(|words| words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(" ; ")
}

/// How every marker line of the tool begins; a random nonce follows, so
/// nothing a guest prints can be one.
pub const MARKER_PREFIX: &str = "@@dismount-iso-qemu-";

/// 128 bits as hex, for markers nobody else can print: std draws a
/// thread's first `RandomState` keys from the OS's randomness source and
/// adds one to `k0` for each later one, so each half is SipHash under
/// keys never used before and secret to this process.
pub fn nonce() -> String {
    let half = || RandomState::new().hash_one(std::process::id());
    format!("{:016x}{:016x}", half(), half())
}

/// The longest script one virsh is handed (one argument, or one line of a
/// session). virsh's memory grows with the square of its script's length:
/// for each word its parser (`vshCommandStringGetArg`, libvirt's
/// tools/vsh.c) keeps a copy of the rest of the line. Measured on virsh
/// 9.0: a 23 KiB batch of 252 `dumpxml` with a marker each took virsh
/// from 19.7 to 25.3 MiB of RSS, 34 KiB to 31.4 MiB, 8 KiB only to
/// 20.3 MiB; that virsh was the peak RSS of a 1005-domain scan
/// (BENCHMARKS.md). A longer batch runs as several pieces (lines of one
/// session, or processes). Linux's cap on one argument, 128 KiB, is far
/// above.
pub(crate) const MAX_SCRIPT_BYTES: usize = 8 * 1024;

/// A sequence of virsh commands run in one connection, each followed by
/// `echo MARKER` (or, for commands whose outputs tell themselves apart,
/// only the last command of each piece).
///
/// A failing command prints to stderr and the batch goes on, so each
/// command's stdout is the text between two markers. The marker carries a
/// random nonce: guest-controlled text (an agent's OS name, say) must not
/// be able to forge a section boundary.
pub struct Batch {
    nonce: String,
    /// Each command's words, unquoted.
    commands: Vec<Vec<String>>,
    /// One marker per piece, not per command.
    self_delimiting: bool,
}

/// Part of a batch small enough for one virsh process.
pub struct Piece {
    /// Which of the batch's commands it runs.
    pub range: Range<usize>,
    /// Those commands, with the `echo` of their markers.
    pub commands: Vec<Vec<String>>,
}

impl Batch {
    pub fn new() -> Self {
        Batch {
            nonce: nonce(),
            commands: Vec::new(),
            self_delimiting: false,
        }
    }

    /// A batch of commands whose outputs the caller tells apart itself
    /// (`dumpxml`: one XML document each): one marker ends each piece, so
    /// [`Batch::split`] gives one section per piece. A session reads its
    /// line a byte at a time, and a marker per command was most of the
    /// bytes and a third of the time.
    pub fn self_delimiting() -> Self {
        Batch {
            self_delimiting: true,
            ..Batch::new()
        }
    }

    /// Appends one command.
    pub fn push<S: AsRef<str>>(&mut self, words: &[S]) {
        self.commands
            .push(words.iter().map(|w| w.as_ref().to_owned()).collect());
    }

    pub fn command_count(&self) -> usize {
        self.commands.len()
    }

    /// The batch in pieces whose script stays within `MAX_SCRIPT_BYTES`,
    /// each for one call.
    pub fn pieces(&self) -> Vec<Piece> {
        self.pieces_within(MAX_SCRIPT_BYTES)
    }

    fn pieces_within(&self, max_bytes: usize) -> Vec<Piece> {
        let mut pieces: Vec<(Piece, usize)> = Vec::new();
        for (index, command) in self.commands.iter().enumerate() {
            let marker = vec!["echo".to_owned(), self.marker(index)];
            // As it will stand in the script, with the ` ; ` after it; a
            // self-delimiting piece keeps room for its one marker.
            let bytes = script(&[command.clone(), marker.clone()]).len() + 3;
            let fits = |size: usize| size + bytes <= max_bytes;
            match pieces.last_mut() {
                // A command too long on its own still gets a piece of its
                // own: the caller keeps commands short (one domain each).
                Some((piece, size)) if fits(*size) => {
                    if self.self_delimiting {
                        // The piece's marker moves behind this command.
                        let moved = piece.commands.pop().expect("a piece ends with its marker");
                        *size -= script(&[moved]).len() + 3;
                    }
                    piece.commands.extend([command.clone(), marker]);
                    piece.range.end = index + 1;
                    *size += bytes;
                }
                _ => pieces.push((
                    Piece {
                        range: index..index + 1,
                        commands: vec![command.clone(), marker],
                    },
                    bytes,
                )),
            }
        }
        pieces.into_iter().map(|(piece, _)| piece).collect()
    }

    fn marker(&self, index: usize) -> String {
        format!("{MARKER_PREFIX}{}-{index}", self.nonce)
    }

    /// Whether `words` is the `echo` of a marker, which the batch adds
    /// after a command (or a self-delimiting piece): framing, not a
    /// command of the caller's.
    pub fn is_marker_echo(words: &[String]) -> bool {
        matches!(words, [echo, marker] if echo == "echo" && marker.starts_with(MARKER_PREFIX))
    }

    /// Splits a piece's stdout into one section per marker, in order: per
    /// command, or for a self-delimiting batch the piece's whole output.
    /// A section is `None` when its marker never appeared (virsh stopped
    /// early), and empty when the command printed nothing (it failed).
    pub fn split<'a>(&self, commands: Range<usize>, stdout: &'a str) -> Vec<Option<&'a str>> {
        let markers = if self.self_delimiting {
            commands.end.saturating_sub(1)..commands.end
        } else {
            commands
        };
        let mut sections = Vec::with_capacity(markers.len());
        let mut rest = stdout;
        for index in markers {
            let marker = format!("{}\n", self.marker(index));
            match find_line(rest.as_bytes(), marker.as_bytes()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_every_ascii_punctuation_and_blank() {
        assert_eq!(quote("a b"), r"a\ b");
        assert_eq!(quote("x;y#z"), r"x\;y\#z");
        assert_eq!(quote(r#"b'q "x"#), r#"b\'q\ \"x"#);
        assert_eq!(quote("-db"), "-db", "the tokenizer reads it as it is");
        assert_eq!(quote("--domain"), "--domain");
        assert_eq!(quote("/srv/iso/a-1.iso"), "/srv/iso/a-1.iso");
        assert_eq!(quote("-d b"), r"\-d\ b");
        assert_eq!(quote("Ünïcode"), "Ünïcode");
        assert_eq!(quote("nl\nhere"), "nl'\n'here", "not a continued line");
    }

    #[test]
    fn split_lines_sections_up_and_marks_missing_ones() {
        let mut batch = Batch::new();
        batch.push(&["dominfo", "--domain", "a"]);
        batch.push(&["dominfo", "--domain", "b"]);
        batch.push(&["dominfo", "--domain", "c"]);
        let stdout = format!("A\n{}\n{}\nC1\nC2\n", batch.marker(0), batch.marker(1));
        assert_eq!(
            batch.split(0..3, &stdout),
            vec![Some("A\n"), Some(""), None],
            "b failed (empty), c never finished (None)"
        );
    }

    #[test]
    fn a_forged_marker_inside_a_line_is_not_a_boundary() {
        let mut batch = Batch::new();
        batch.push(&["x"]);
        let stdout = format!("os: {m}\n{m}\n", m = batch.marker(0));
        let forged_line = format!("os: {}\n", batch.marker(0));
        assert_eq!(batch.split(0..1, &stdout), vec![Some(forged_line.as_str())]);
    }

    /// A self-delimiting batch: one marker, at the end of each piece, and
    /// one section per piece holding every output of it.
    #[test]
    fn a_self_delimiting_batch_has_one_marker_per_piece() {
        let mut batch = Batch::self_delimiting();
        for n in 0..100 {
            batch.push(&["dumpxml", "--domain", &format!("vm-{n:03}")]);
        }
        let pieces = batch.pieces_within(1000);
        assert!(pieces.len() > 1);
        let mut next = 0;
        for piece in &pieces {
            assert_eq!(piece.range.start, next);
            next = piece.range.end;
            assert!(script(&piece.commands).len() <= 1000);
            let echoes = piece.commands.iter().filter(|c| c[0] == "echo").count();
            assert_eq!(echoes, 1, "{:?}", piece.commands);
            assert_eq!(piece.commands.last().unwrap()[0], "echo");
            assert_eq!(piece.commands.len(), piece.range.len() + 1);
            let stdout: String = piece
                .range
                .clone()
                .map(|i| format!("out {i}\n"))
                .chain([format!("{}\n", batch.marker(piece.range.end - 1))])
                .collect();
            let outputs: String = piece.range.clone().map(|i| format!("out {i}\n")).collect();
            assert_eq!(
                batch.split(piece.range.clone(), &stdout),
                [Some(outputs.as_str())]
            );
            assert_eq!(batch.split(piece.range.clone(), "out\n"), [None]);
        }
        assert_eq!(next, 100);
    }

    #[test]
    fn long_batches_become_pieces_that_cover_every_command_once() {
        let mut batch = Batch::new();
        for n in 0..100 {
            batch.push(&["dominfo", "--domain", &format!("vm-{n:03}")]);
        }
        assert_eq!(
            batch.pieces().len(),
            2,
            "100 commands with markers are 9 KiB"
        );
        let pieces = batch.pieces_within(1000);
        assert!(pieces.len() > 1);
        assert!(pieces.iter().all(|p| script(&p.commands).len() <= 1000));
        let mut next = 0;
        for piece in &pieces {
            assert_eq!(piece.range.start, next, "contiguous, in order");
            next = piece.range.end;
            // Each piece's markers are numbered like the whole batch's.
            let stdout: String = piece
                .range
                .clone()
                .map(|i| format!("out {i}\n{}\n", batch.marker(i)))
                .collect();
            let sections = batch.split(piece.range.clone(), &stdout);
            for (i, section) in piece.range.clone().zip(sections) {
                assert_eq!(section, Some(format!("out {i}\n").as_str()));
            }
        }
        assert_eq!(next, 100);
    }
}
