//! What one virsh call is: its program, its connection and its commands,
//! and how it reads back to a person (a command line to paste, a summary
//! for an error message), quoted for a POSIX shell and for virsh.

use super::batch::{Batch, quote, script};
use crate::utils::is_unsafe_on_a_terminal;

/// One virsh call: its program, its connection and its commands. A
/// process runs it from argv, never through a shell; a session feeds it to
/// virsh's own command language on stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: String,
    /// `-c URI`; `None` lets virsh apply its own default.
    pub connect: Option<String>,
    /// Each command's words; several run as one script in one connection.
    pub commands: Vec<Vec<String>>,
}

impl Invocation {
    /// The arguments after the program: `-c URI`, then the one command's
    /// words or, for several, the script as one argument.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(uri) = &self.connect {
            args.extend(["-c".to_owned(), uri.clone()]);
        }
        match self.commands.as_slice() {
            [] => {}
            [command] => args.extend(command.iter().cloned()),
            commands => args.push(script(commands)),
        }
        args
    }

    /// The command as a person would type it, for error messages and
    /// `--dry-run`; quoting follows POSIX shell rules.
    pub fn command_line(&self) -> String {
        std::iter::once(self.program.clone())
            .chain(self.args())
            .map(|word| shell_quote(&word))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The command line for an error message, as an admin would type it:
    /// the caller's commands without a batch's marker `echo`s, several of
    /// them as one script (`virsh -c URI 'domstats --raw ; uri'`), words
    /// quoted only where virsh's tokenizer needs it. A batch can run to
    /// many kilobytes, so a long script keeps its first commands and a
    /// long argument its start.
    pub fn summary(&self) -> String {
        let commands: Vec<&Vec<String>> = self
            .commands
            .iter()
            .filter(|words| !Batch::is_marker_echo(words))
            .collect();
        let mut words = vec![self.program.clone()];
        if let Some(uri) = &self.connect {
            words.extend(["-c".to_owned(), uri.clone()]);
        }
        match commands.as_slice() {
            [] => {}
            [command] => words.extend(command.iter().cloned()),
            commands => words.push(script_for_people(commands)),
        }
        words
            .into_iter()
            .map(|word| match word.char_indices().nth(SUMMARY_ARG_CHARS) {
                Some((cut, _)) => {
                    format!("{}…({} bytes)", shell_quote(&word[..cut]), word.len())
                }
                None => shell_quote(&word),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// How much of one argument an error message shows.
const SUMMARY_ARG_CHARS: usize = 120;

/// Commands as one line of virsh's command language that a person reads:
/// as many whole commands as fit in [`SUMMARY_ARG_CHARS`], then how many
/// more there are. Plain words stay as they are; the others get
/// [`quote`]'s backslashes, so the line still runs as it reads.
fn script_for_people(commands: &[&Vec<String>]) -> String {
    let mut script = String::new();
    for (shown, words) in commands.iter().enumerate() {
        let command = words
            .iter()
            .map(|word| {
                if is_plain(word) {
                    word.clone()
                } else {
                    quote(word)
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        if shown > 0 {
            if script.chars().count() + command.chars().count() > SUMMARY_ARG_CHARS {
                script.push_str(&format!(" ; …({} more)", commands.len() - shown));
                break;
            }
            script.push_str(" ; ");
        }
        script.push_str(&command);
    }
    script
}

/// A word that means the same, unquoted, to a POSIX shell and to virsh's
/// tokenizer.
fn is_plain(word: &str) -> bool {
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,%".contains(c))
}

/// One word as a POSIX shell reads it back. A word holding a control or
/// format character (bidi controls, zero-width spaces: see
/// [`is_unsafe_on_a_terminal`]) is written `$'…'` (bash, zsh, ksh) with
/// every such character escaped (`\uXXXX`, `\UXXXXXXXX` beyond U+FFFF),
/// so the printed command stays exact and pasteable and nothing in it can
/// act on the terminal or hide.
fn shell_quote(word: &str) -> String {
    if is_plain(word) {
        return word.to_owned();
    }
    if !word.chars().any(is_unsafe_on_a_terminal) {
        return format!("'{}'", word.replace('\'', r"'\''"));
    }
    let mut quoted = String::from("$'");
    for c in word.chars() {
        match c {
            '\\' => quoted.push_str(r"\\"),
            '\'' => quoted.push_str(r"\'"),
            '\t' => quoted.push_str(r"\t"),
            '\n' => quoted.push_str(r"\n"),
            '\r' => quoted.push_str(r"\r"),
            // bash reads at most 4 hex digits after `\u`, 8 after `\U`.
            c if is_unsafe_on_a_terminal(c) && u32::from(c) > 0xffff => {
                quoted.push_str(&format!(r"\U{:08x}", u32::from(c)))
            }
            c if is_unsafe_on_a_terminal(c) => quoted.push_str(&format!(r"\u{:04x}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('\'');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_shortens_long_arguments_only() {
        let inv = Invocation {
            program: "virsh".into(),
            connect: Some("test:///x".into()),
            commands: vec![vec!["é".repeat(200)]],
        };
        let summary = inv.summary();
        assert!(summary.starts_with("virsh -c test:///x 'éé"), "{summary}");
        assert!(summary.ends_with("é'…(400 bytes)"), "{summary}");
        assert_eq!(summary.matches('é').count(), 120);
    }

    /// A batch of 400 `dominfo`s: its first commands, as typed, and how
    /// many more; none of its marker `echo`s.
    #[test]
    fn summary_of_a_long_batch_keeps_its_first_commands() {
        let mut batch = Batch::new();
        for n in 0..60 {
            batch.push(&["dominfo", "--domain", &format!("vm {n:03}")]);
        }
        let inv = Invocation {
            program: "virsh".into(),
            connect: Some("test:///x".into()),
            commands: batch.pieces().remove(0).commands,
        };
        let summary = inv.summary();
        assert!(
            summary.starts_with(
                r"virsh -c test:///x 'dominfo --domain vm\ 000 ; dominfo --domain vm\ 001 ; "
            ),
            "{summary}"
        );
        assert!(summary.ends_with(" ; …(56 more)'"), "{summary}");
        assert!(!summary.contains("echo"), "{summary}");
    }

    /// bash reads the `$'…'` form back to the exact word.
    #[test]
    fn words_with_controls_are_quoted_for_bash_exactly() {
        // Invisible format characters too, one beyond U+FFFF (a tag).
        for (word, expected) in [
            (
                "web\tprod\u{202e}it's\\x\u{9b}",
                r"$'web\tprod\u202eit\'s\\x\u009b'",
            ),
            ("web\u{200b}prod", r"$'web\u200bprod'"),
            (
                "\u{feff}a\u{ad}b\u{e0041}1",
                r"$'\ufeffa\u00adb\U000e00411'",
            ),
        ] {
            let quoted = shell_quote(word);
            assert_eq!(quoted, expected);
            let echoed = std::process::Command::new("bash")
                .args(["-c", &format!("printf %s {quoted}")])
                .env("LC_ALL", "C.UTF-8")
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(echoed.stdout).unwrap(), word);
        }
    }

    #[test]
    fn command_line_quotes_like_a_shell() {
        let inv = Invocation {
            program: "virsh".into(),
            connect: None,
            commands: vec![vec![
                "dominfo".into(),
                "--domain".into(),
                "it's a vm".into(),
            ]],
        };
        assert_eq!(inv.command_line(), r"virsh dominfo --domain 'it'\''s a vm'");
    }
}
