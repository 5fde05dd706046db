//! The shells' side of a completion (bash, zsh, fish): their registration
//! scripts, and each candidate written so that the shell inserts it as
//! exactly that word, whatever it holds; a TAB never runs anything.
//!
//! clap_complete's own adapters hand the shell candidates raw (a domain
//! named ``x`touch f` `` became a command on Enter), pass bash's
//! `COMP_WORDS`, which bash splits at `COMP_WORDBREAKS` (a URI's `:` and
//! `@`), and pass zsh's and fish's words with their quotes on.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use clap_complete::engine::CompletionCandidate;
use clap_complete::env::EnvCompleter;

/// bash: the line up to the cursor (`COMP_LINE`, not `COMP_WORDS`) read
/// here as bash reads it, and each candidate quoted for the text readline
/// replaces (`$2`).
pub struct Bash;

/// zsh: the words with their quotes removed (`${(Q)…}`); zsh's `compadd`
/// quotes what it inserts.
pub struct Zsh;

/// fish: the tokens unescaped (`commandline --tokenize`, `string
/// unescape`); fish escapes what it inserts.
pub struct Fish;

impl EnvCompleter for Bash {
    fn name(&self) -> &'static str {
        "bash"
    }
    fn is(&self, name: &str) -> bool {
        name == "bash"
    }
    fn write_registration(
        &self,
        var: &str,
        name: &str,
        bin: &str,
        completer: &str,
        buf: &mut dyn Write,
    ) -> std::io::Result<()> {
        // mapfile, not `COMPREPLY=( $(…) )`: no word splitting or glob
        // expansion of what the tool prints. The nospace rule as
        // clap_complete's: after a directory or an `--option=`.
        let script = r#"
_clap_complete_NAME() {
    compopt +o nospace 2> /dev/null
    mapfile -t COMPREPLY < <(VAR=bash COMPLETER -- "${COMP_LINE:0:COMP_POINT}" "$2")
    if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} =~ [=/][\'\"]?$ ]]; then
        compopt -o nospace 2> /dev/null
    fi
}
if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -o nospace -o bashdefault -o nosort -F _clap_complete_NAME BIN
else
    complete -o nospace -o bashdefault -F _clap_complete_NAME BIN
fi
"#
        .replace("NAME", &name.replace('-', "_"))
        .replace("BIN", &quote(bin, Quoting::Bare))
        .replace("COMPLETER", &quote(completer, Quoting::Bare))
        .replace("VAR", var);
        writeln!(buf, "{script}")
    }
    fn write_complete(
        &self,
        cmd: &mut clap::Command,
        args: Vec<OsString>,
        current_dir: Option<&Path>,
        buf: &mut dyn Write,
    ) -> std::io::Result<()> {
        let [line, replaced] = args.as_slice() else {
            return Ok(());
        };
        let (Some(line), Some(replaced)) = (line.to_str(), replaced.to_str()) else {
            return Ok(());
        };
        for reply in bash_replies(cmd, line, replaced, current_dir)? {
            writeln!(buf, "{reply}")?;
        }
        Ok(())
    }
}

/// What bash is to insert in place of `replaced` (the end of the line up to
/// the cursor, as readline chose it) for each candidate: the rest of the
/// candidate after what stays of the word, quoted as the kept part leaves
/// the quoting, a quote it opened closed.
fn bash_replies(
    cmd: &mut clap::Command,
    line: &str,
    replaced: &str,
    current_dir: Option<&Path>,
) -> std::io::Result<Vec<String>> {
    let Some(words) = Words::read(line) else {
        return Ok(Vec::new());
    };
    // readline replaces a part of the word: from a word break (`:`, `=`,
    // `@`) or an opening quote on. What comes before it stays.
    let Some(kept) = line[words.last_start..].strip_suffix(replaced) else {
        return Ok(Vec::new());
    };
    let Some(Words {
        values: kept_value,
        quoting,
        ..
    }) = Words::read(kept)
    else {
        return Ok(Vec::new());
    };
    let kept_value = kept_value.concat();
    let found = super::candidates(
        cmd,
        words.values.into_iter().map(OsString::from).collect(),
        current_dir,
    )?;
    Ok(found
        .iter()
        .filter_map(|candidate| {
            let value = candidate.get_value().to_str()?;
            Some(quote(value.strip_prefix(kept_value.as_str())?, quoting))
        })
        .collect())
}

impl EnvCompleter for Zsh {
    fn name(&self) -> &'static str {
        "zsh"
    }
    fn is(&self, name: &str) -> bool {
        name == "zsh"
    }
    fn write_registration(
        &self,
        var: &str,
        name: &str,
        bin: &str,
        completer: &str,
        buf: &mut dyn Write,
    ) -> std::io::Result<()> {
        // The word being completed up to the cursor is $PREFIX, read in
        // the quoting it opened ($compstate[quote]): inside single quotes
        // only a `'\''` stands for something else. The listing as
        // clap_complete's: directories go on with `/`.
        let script = r#"#compdef BIN
function _clap_dynamic_completer_NAME() {
    local current=$PREFIX
    if [[ $compstate[quote] == "'" ]]; then
        current=${current//"'\\''"/"'"}
    else
        current=${(Q)current}
    fi
    local -a completions=("${(@f)$( \
        VAR="zsh" \
        COMPLETER -- "${(@Q)words[1,CURRENT-1]}" "$current" 2>/dev/null \
    )}")

    if [[ -n $completions ]]; then
        local -a dirs=()
        local -a other=()
        local completion
        for completion in $completions; do
            local value="${completion%%:*}"
            if [[ "$value" == */ ]]; then
                local dir_no_slash="${value%/}"
                if [[ "$completion" == *:* ]]; then
                    local desc="${completion#*:}"
                    dirs+=("$dir_no_slash:$desc")
                else
                    dirs+=("$dir_no_slash")
                fi
            else
                other+=("$completion")
            fi
        done
        [[ -n $dirs ]] && _describe -V 'values' dirs -S '/' -r '/'
        [[ -n $other ]] && _describe -V 'values' other
    fi
}

compdef _clap_dynamic_completer_NAME BIN"#
            .replace("NAME", &name.replace('-', "_"))
            .replace("COMPLETER", &quote(completer, Quoting::Bare))
            .replace("BIN", &quote(bin, Quoting::Bare))
            .replace("VAR", var);
        writeln!(buf, "{script}")
    }
    fn write_complete(
        &self,
        cmd: &mut clap::Command,
        args: Vec<OsString>,
        current_dir: Option<&Path>,
        buf: &mut dyn Write,
    ) -> std::io::Result<()> {
        // `_describe`'s form: `VALUE:HELP`, a `:` or `\` of the value escaped.
        for candidate in super::candidates(cmd, args, current_dir)? {
            let value = candidate.get_value().to_string_lossy();
            write!(buf, "{}", value.replace('\\', "\\\\").replace(':', "\\:"))?;
            if let Some(help) = first_line_of_help(&candidate) {
                write!(buf, ":{}", help.replace('\\', "\\\\"))?;
            }
            writeln!(buf)?;
        }
        Ok(())
    }
}

impl EnvCompleter for Fish {
    fn name(&self) -> &'static str {
        "fish"
    }
    fn is(&self, name: &str) -> bool {
        name == "fish"
    }
    fn write_registration(
        &self,
        var: &str,
        name: &str,
        bin: &str,
        completer: &str,
        buf: &mut dyn Write,
    ) -> std::io::Result<()> {
        // A function, so that the completer's path is quoted once.
        let script = r#"function __clap_complete_NAME
    set -l current (commandline --current-token | string unescape)
    VAR=fish COMPLETER -- (commandline --current-process --tokenize --cut-at-cursor) "$current"
end
complete --keep-order --exclusive --command BIN --arguments '(__clap_complete_NAME)'"#
            .replace("NAME", &name.replace('-', "_"))
            .replace("COMPLETER", &fish_quote(completer))
            .replace("BIN", &fish_quote(bin))
            .replace("VAR", var);
        writeln!(buf, "{script}")
    }
    fn write_complete(
        &self,
        cmd: &mut clap::Command,
        args: Vec<OsString>,
        current_dir: Option<&Path>,
        buf: &mut dyn Write,
    ) -> std::io::Result<()> {
        // `VALUE<TAB>HELP` a line; fish escapes the value as it inserts it.
        for candidate in super::candidates(cmd, args, current_dir)? {
            write!(buf, "{}", candidate.get_value().to_string_lossy())?;
            if let Some(help) = first_line_of_help(&candidate) {
                write!(buf, "\t{help}")?;
            }
            writeln!(buf)?;
        }
        Ok(())
    }
}

fn first_line_of_help(candidate: &CompletionCandidate) -> Option<String> {
    let help = candidate.get_help()?.to_string();
    Some(help.lines().next().unwrap_or_default().to_owned())
}

/// fish's single quotes: only `\` and `'` are escaped in them.
fn fish_quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// What the next character of a bash word is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    Bare,
    /// After an opening `'`.
    Single,
    /// After an opening `"`.
    Double,
}

/// A bash command line's words as the command will get them (quotes and
/// backslashes removed; no expansion), the last one possibly unfinished.
#[derive(Debug, PartialEq, Eq)]
struct Words {
    values: Vec<String>,
    /// Where the last word starts in the line (its length after a blank:
    /// the last word is then the empty one being started).
    last_start: usize,
    /// The quoting at the end of the line.
    quoting: Quoting,
}

impl Words {
    /// None for a line that ends in a lone backslash.
    fn read(line: &str) -> Option<Words> {
        let mut values = Vec::new();
        let mut word = String::new();
        // A word is started by any character but a blank, an empty `''` too.
        let mut started = false;
        let mut last_start = 0;
        let mut quoting = Quoting::Bare;
        let mut chars = line.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match (quoting, c) {
                (Quoting::Bare, ' ' | '\t' | '\n') => {
                    if started {
                        values.push(std::mem::take(&mut word));
                        started = false;
                    }
                    continue;
                }
                (Quoting::Bare, '\\') => match chars.next() {
                    // A line continuation joins, and is no word.
                    Some((_, '\n')) => {}
                    Some((_, escaped)) => word.push(escaped),
                    None => return None,
                },
                (Quoting::Bare, '\'') => quoting = Quoting::Single,
                (Quoting::Bare, '"') => quoting = Quoting::Double,
                (Quoting::Single, '\'') | (Quoting::Double, '"') => quoting = Quoting::Bare,
                (Quoting::Double, '\\') => match chars.peek() {
                    Some((_, '$' | '`' | '"' | '\\')) => {
                        word.push(chars.next()?.1);
                    }
                    Some((_, '\n')) => {
                        chars.next();
                    }
                    Some(_) => word.push('\\'),
                    None => return None,
                },
                (_, c) => word.push(c),
            }
            if !started {
                started = true;
                last_start = at;
            }
        }
        if !started {
            last_start = line.len();
        }
        values.push(word);
        Some(Words {
            values,
            last_start,
            quoting,
        })
    }
}

/// `text` written so that bash reads it back as exactly `text` in
/// `quoting`, an opened quote closed at the end: in bare words every
/// character a shell could act on is escaped with a backslash, one by one
/// (so that a candidate's quoted form starts with its prefix's, as
/// readline's common prefix of several needs). Where the form would start
/// with the opened quote, readline takes that for the one typed and drops
/// the typed one: the form then opens it again.
fn quote(text: &str, quoting: Quoting) -> String {
    let mut quoted = String::with_capacity(text.len() + 3);
    match (quoting, text.chars().next()) {
        (Quoting::Single, Some('\'')) => quoted.push('\''),
        (Quoting::Double, Some('!')) => quoted.push('"'),
        _ => {}
    }
    match quoting {
        Quoting::Bare => {
            for c in text.chars() {
                if !(c.is_alphanumeric() || "_-./,+@%:=".contains(c)) {
                    quoted.push('\\');
                }
                quoted.push(c);
            }
        }
        Quoting::Single => {
            quoted.push_str(&text.replace('\'', r"'\''"));
            quoted.push('\'');
        }
        Quoting::Double => {
            for c in text.chars() {
                match c {
                    '$' | '`' | '"' | '\\' => {
                        quoted.push('\\');
                        quoted.push(c);
                    }
                    // History expansion acts on `!` even in double quotes:
                    // out of them for it.
                    '!' => quoted.push_str(r#""\!""#),
                    c => quoted.push(c),
                }
            }
            quoted.push('"');
        }
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> (Vec<String>, usize, Quoting) {
        let read = Words::read(line).unwrap();
        (read.values, read.last_start, read.quoting)
    }

    #[test]
    fn a_line_reads_as_bash_reads_it() {
        let line = r#"tool -c qemu+ssh://root@host/system eject 'it'\''s' "a \"b\" \x" c\ d "#;
        let (values, last_start, quoting) = words(line);
        assert_eq!(
            values,
            [
                "tool",
                "-c",
                "qemu+ssh://root@host/system",
                "eject",
                "it's",
                r#"a "b" \x"#,
                "c d",
                ""
            ]
        );
        assert_eq!((last_start, quoting), (line.len(), Quoting::Bare));
        // An unfinished word: its start and the quote it opened.
        let (values, last_start, quoting) = words("tool eject 'with sp");
        assert_eq!(values, ["tool", "eject", "with sp"]);
        assert_eq!((last_start, quoting), (11, Quoting::Single));
        assert_eq!(words(r#"tool "a\x"#).2, Quoting::Double);
        assert_eq!(words("a''").0, ["a"]);
        assert_eq!(words("a '' b").0, ["a", "", "b"]);
        assert!(Words::read(r"tool x\").is_none());
        assert!(Words::read(r#"tool "x\"#).is_none());
    }

    /// Whatever a name holds, bash reads its quoted form back as the name
    /// and runs nothing: each form is given to a real bash as an argument.
    #[test]
    fn a_quoted_name_reads_back_whole_in_bash() {
        let names = [
            "y`touch PWNED`",
            "x$(touch PWNED)",
            "with space",
            "trail ",
            "it's",
            r#"say "hi""#,
            "semi;touch PWNED",
            "glob*[ab]?",
            "{a,b}",
            "~tilde",
            "#hash",
            "!bang",
            "'lead",
            r"back\slash",
            "a:b@c=d",
            "amp&pipe|<in>",
            "Débian",
        ];
        for quoting in [Quoting::Bare, Quoting::Single, Quoting::Double] {
            let opening = match quoting {
                Quoting::Bare => "",
                Quoting::Single => "'",
                Quoting::Double => "\"",
            };
            // The opening quote typed, unless the form opens it (readline
            // drops the typed one then).
            let line: String = names
                .iter()
                .map(|name| {
                    let form = quote(name, quoting);
                    match form.starts_with(opening) {
                        true => format!(" {form}"),
                        false => format!(" {opening}{form}"),
                    }
                })
                .collect();
            let script = format!("set -H; cd \"$1\" && printf '%s\\0'{line}");
            let dir = std::env::temp_dir()
                .join(format!("dismount-quote-{}-{quoting:?}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let output = std::process::Command::new("bash")
                .args(["-c", &script, "bash"])
                .arg(&dir)
                .output()
                .unwrap();
            let read: Vec<String> = String::from_utf8(output.stdout)
                .unwrap()
                .split_terminator('\0')
                .map(str::to_owned)
                .collect();
            assert_eq!(read, names, "{quoting:?}: {line}");
            assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "{quoting:?}");
            std::fs::remove_dir(&dir).unwrap();
            // And the line reads back as the words it quotes.
            let read = Words::read(&format!("tool{line}")).unwrap();
            assert_eq!(read.values[1..], names, "{quoting:?}");
        }
    }

    #[test]
    fn a_quoted_prefix_is_the_prefix_of_the_quoted_name() {
        let name = "web prod's $x";
        for end in 0..=name.len() {
            let quoted = quote(&name[..end], Quoting::Bare);
            assert!(quote(name, Quoting::Bare).starts_with(&quoted));
        }
    }
}
