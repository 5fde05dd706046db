//! Questions and answers: a console over any `BufRead` and `Write`, and
//! who may be asked (a subcommand only on a terminal, the menu always).

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::{Result, bail};

/// One answer read at a prompt.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// A line, trimmed.
    Text(String),
    /// `q`: back out of whatever is being asked.
    Quit,
    /// End of input: the session is over.
    End,
}

/// A prompt-and-answer conversation over a reader and a writer.
pub struct Console<R, W> {
    input: R,
    output: Sink<W>,
}

/// The console's own input or output failed (the terminal hung up, the
/// pipe in its place broke), as opposed to whatever an action's error
/// carries, an `io::Error` of virsh or of a file included: what ends the
/// menu. It travels inside an `io::Error` of the same kind (`Write` and
/// `BufRead` speak only that), so a closed pipe still reads as one, and
/// says what the `io::Error` it wraps says.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ConsoleError(io::Error);

impl ConsoleError {
    fn wrap(error: io::Error) -> io::Error {
        io::Error::new(error.kind(), ConsoleError(error))
    }

    /// The console's own failure in `error`'s chain, if any.
    fn found_in(error: &anyhow::Error) -> Option<&io::Error> {
        error
            .chain()
            .filter_map(|cause| cause.downcast_ref::<io::Error>())
            .find(|io| io.get_ref().is_some_and(|inner| inner.is::<ConsoleError>()))
    }

    /// Whether `error` is, or comes from, a console's own failure.
    pub fn caused(error: &anyhow::Error) -> bool {
        Self::found_in(error).is_some()
    }

    /// Whether `error` is the console's output closed by its reader
    /// (`| head`): the console's own failure, and a broken pipe.
    pub fn closed_pipe(error: &anyhow::Error) -> bool {
        Self::found_in(error).is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// A console's output. A reader that went away (`| head`) ends the menu
/// or a listing, but must not stop a confirmed change half-way nor pass
/// for one that succeeded: a change command's sink takes in what it can
/// no longer write, and remembers that the reader is gone.
pub struct Sink<W> {
    inner: W,
    closed: bool,
    keep_going: bool,
}

impl<W: Write> Sink<W> {
    /// The tool's output for a listing: every failure of it, a closed
    /// pipe included, is the console's own ([`ConsoleError`]), which is
    /// how `main` tells a reader that went away from a pipe to virsh that
    /// broke.
    pub fn new(inner: W) -> Self {
        Sink {
            inner,
            closed: false,
            keep_going: false,
        }
    }

    /// Whether the reader went away.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn outcome<T>(&mut self, result: io::Result<T>, taken: T) -> io::Result<T> {
        match result {
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                if self.keep_going {
                    Ok(taken)
                } else {
                    Err(ConsoleError::wrap(error))
                }
            }
            Err(error) => Err(ConsoleError::wrap(error)),
            ok => ok,
        }
    }
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.closed && self.keep_going {
            return Ok(bytes.len());
        }
        let result = self.inner.write(bytes);
        self.outcome(result, bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed && self.keep_going {
            return Ok(());
        }
        let result = self.inner.flush();
        self.outcome(result, ())
    }
}

impl<R: BufRead, W: Write> Console<R, W> {
    /// A console whose closed output is an error, as for any listing.
    pub fn new(input: R, output: W) -> Self {
        Console::with_sink(input, output, false)
    }

    /// A change command's console: a closed output is noted, and the
    /// command goes on (see [`Sink`]).
    pub fn for_changes(input: R, output: W) -> Self {
        Console::with_sink(input, output, true)
    }

    fn with_sink(input: R, output: W, keep_going: bool) -> Self {
        let mut output = Sink::new(output);
        output.keep_going = keep_going;
        Console { input, output }
    }

    pub fn out(&mut self) -> &mut Sink<W> {
        &mut self.output
    }

    /// Asks until a line comes that is no longer than [`LONGEST_ANSWER`]:
    /// a longer one is refused whole (never held in memory nor echoed;
    /// a 50 MB line was printed back), since no answer is that long.
    pub fn ask(&mut self, prompt: &str) -> Result<Answer> {
        let bytes = loop {
            write!(self.output, "{prompt}")?;
            self.output.flush()?;
            match self.read_line().map_err(ConsoleError::wrap)? {
                Line::Whole(bytes) => break bytes,
                Line::End => {
                    // Input that ends mid-prompt leaves the cursor after
                    // the prompt; end the line so the shell prompt starts
                    // clean.
                    writeln!(self.output)?;
                    return Ok(Answer::End);
                }
                Line::TooLong => writeln!(
                    self.output,
                    "That answer is longer than {LONGEST_ANSWER} bytes: ignored."
                )?,
            }
        };
        // Bytes that are not UTF-8 make an answer like any other junk: it
        // gets the hint, instead of ending the session.
        let line = String::from_utf8_lossy(&bytes);
        let line = line.trim();
        Ok(if line.eq_ignore_ascii_case("q") {
            Answer::Quit
        } else {
            Answer::Text(line.to_owned())
        })
    }
}

/// The longest answer read: a path as long as Linux allows (PATH_MAX,
/// 4096), and room to spare.
pub const LONGEST_ANSWER: usize = 8192;

/// One line of input, as [`Console::read_line`] reads it.
enum Line {
    /// The line, with its newline if it had one.
    Whole(Vec<u8>),
    /// Longer than [`LONGEST_ANSWER`]: read to its end and dropped.
    TooLong,
    /// No input left.
    End,
}

impl<R: BufRead, W> Console<R, W> {
    /// Reads a line, holding at most [`LONGEST_ANSWER`] bytes of it.
    fn read_line(&mut self) -> io::Result<Line> {
        let mut bytes = Vec::new();
        let limit = LONGEST_ANSWER as u64 + 1;
        if (&mut self.input)
            .take(limit)
            .read_until(b'\n', &mut bytes)?
            == 0
        {
            return Ok(Line::End);
        }
        if bytes.len() <= LONGEST_ANSWER || bytes.ends_with(b"\n") {
            return Ok(Line::Whole(bytes));
        }
        // The rest of the line, buffer by buffer, kept nowhere.
        loop {
            let buffer = self.input.fill_buf()?;
            if buffer.is_empty() {
                return Ok(Line::TooLong);
            }
            let (used, ended) = match buffer.iter().position(|&b| b == b'\n') {
                Some(at) => (at + 1, true),
                None => (buffer.len(), false),
            };
            self.input.consume(used);
            if ended {
                return Ok(Line::TooLong);
            }
        }
    }
}

/// An answer to a numbered list.
#[derive(Debug, PartialEq, Eq)]
pub enum Choice {
    /// The item at this index (the number given, less one).
    Item(usize),
    /// Other text that the question accepts besides a number.
    Other(String),
}

/// Who answers questions. A subcommand asks only when stdin is a terminal;
/// the menu always may, and confirms every change before making it.
pub struct Prompt<'a, R, W> {
    console: &'a mut Console<R, W>,
    interactive: bool,
    always_confirm: bool,
}

impl<'a, R: BufRead, W: Write> Prompt<'a, R, W> {
    pub fn command(console: &'a mut Console<R, W>, interactive: bool) -> Self {
        Prompt {
            console,
            interactive,
            always_confirm: false,
        }
    }

    pub fn menu(console: &'a mut Console<R, W>) -> Self {
        Prompt {
            console,
            interactive: true,
            always_confirm: true,
        }
    }

    pub fn out(&mut self) -> &mut Sink<W> {
        self.console.out()
    }

    /// Whether the output's reader went away: nobody sees a plan or a
    /// question any more.
    pub fn output_closed(&self) -> bool {
        self.console.output.is_closed()
    }

    /// Whether anybody is there to answer.
    pub fn can_ask(&self) -> bool {
        self.interactive
    }

    /// Whether every change is confirmed first, even one the command would
    /// make without asking (the menu's way).
    pub fn confirms_every_change(&self) -> bool {
        self.always_confirm
    }

    /// A numbered choice; `None` when the user backs out with `q` or the
    /// input ends. Junk is asked again.
    pub fn choose(&mut self, question: &str, items: &[String]) -> Result<Option<usize>> {
        let hint = format!("Enter a number from 1 to {}, or q to go back.", items.len());
        self.choose_with(question, items, |choice| match choice {
            Choice::Item(index) => Ok(index),
            Choice::Other(_) => Err(hint.clone()),
        })
    }

    /// Lists `items` numbered from 1, then asks until `accept` takes the
    /// answer: a number among them comes as [`Choice::Item`], any other
    /// text as [`Choice::Other`]; what `accept` refuses, its message is
    /// shown and the question asked again. `None` when the user backs out
    /// with `q` or the input ends.
    pub fn choose_with<T>(
        &mut self,
        question: &str,
        items: &[String],
        mut accept: impl FnMut(Choice) -> Result<T, String>,
    ) -> Result<Option<T>> {
        for (number, item) in items.iter().enumerate() {
            writeln!(self.out(), "  {}) {item}", number + 1)?;
        }
        loop {
            let text = match self.console.ask(question)? {
                Answer::Quit | Answer::End => return Ok(None),
                Answer::Text(text) => text,
            };
            let choice = match text.parse::<usize>() {
                Ok(n) if (1..=items.len()).contains(&n) => Choice::Item(n - 1),
                _ => Choice::Other(text),
            };
            match accept(choice) {
                Ok(accepted) => return Ok(Some(accepted)),
                Err(why) => writeln!(self.out(), "{why}")?,
            }
        }
    }

    /// Yes or no to the listed plan. Without a terminal (and outside the
    /// menu) nobody can answer, so that is a refusal, not a silent yes.
    pub fn confirm(&mut self, what: &str) -> Result<bool> {
        if self.output_closed() {
            bail!("not {what}: stdout is closed, so nobody saw the plan; nothing changed");
        }
        if !self.interactive {
            bail!(
                "not {what}: stdin is not a terminal, so nobody can confirm; pass --yes to go ahead"
            );
        }
        Ok(matches!(
            self.console.ask("Go ahead? [y/N]: ")?,
            Answer::Text(text) if matches!(text.to_ascii_lowercase().as_str(), "y" | "yes")
        ))
    }
}

/// Runs a change subcommand's `flow` with questions read from stdin, asked
/// only when stdin is a terminal, on a console that goes on past a closed
/// stdout.
pub fn with_stdin<W: Write>(
    out: W,
    flow: impl FnOnce(&mut Prompt<io::StdinLock<'static>, W>) -> Result<ExitCode>,
) -> Result<ExitCode> {
    let interactive = io::stdin().is_terminal();
    let mut console = Console::for_changes(io::stdin().lock(), out);
    flow(&mut Prompt::command(&mut console, interactive))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ask_distinguishes_text_quit_and_end() {
        let mut out = Vec::new();
        let mut console = Console::new(" 4 \nQ\n".as_bytes(), &mut out);
        assert_eq!(console.ask("> ").unwrap(), Answer::Text("4".into()));
        assert_eq!(console.ask("> ").unwrap(), Answer::Quit);
        assert_eq!(console.ask("> ").unwrap(), Answer::End);
        assert_eq!(String::from_utf8(out).unwrap(), "> > > \n");
    }

    #[test]
    fn a_numbered_choice_asks_again_until_accepted() {
        let mut out = Vec::new();
        let mut console = Console::new("0\n3\nb\nx\n2\n".as_bytes(), &mut out);
        let mut prompt = Prompt::menu(&mut console);
        let items = ["one".to_owned(), "two".to_owned()];
        let first = prompt.choose_with("? ", &items, |choice| match choice {
            Choice::Other(text) if text == "x" => Ok(text),
            _ => Err("hint".to_owned()),
        });
        assert_eq!(first.unwrap().as_deref(), Some("x"));
        assert_eq!(prompt.choose("? ", &items).unwrap(), Some(1));
        assert_eq!(prompt.choose("? ", &items).unwrap(), None, "input ended");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("hint").count(), 3, "0, 3 and b\n{text}");
        assert_eq!(text.matches("  1) one").count(), 3, "listed per question");
    }

    /// Only the console's own failure is one: an action's error carrying
    /// an `io::Error` and no virsh error (a file it could not read) used
    /// to pass for the terminal's, as the menu went by their absence. The
    /// console's keeps its kind (a closed pipe stays one) and its words.
    #[test]
    fn the_console_s_own_failure_is_told_from_an_action_s_io_error() {
        let denied = std::io::Error::from(io::ErrorKind::PermissionDenied);
        let action = anyhow::Error::from(denied).context("cannot read '/x.iso'");
        assert!(!ConsoleError::caused(&action));

        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(libc::EPIPE))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut console = Console::new("".as_bytes(), Closed);
        let error = console.ask("> ").unwrap_err().context("while asking");
        assert!(ConsoleError::caused(&error));
        assert!(crate::cli::exit::is_broken_pipe(&error));
        // A pipe to virsh that broke (an upload's `vol-upload` that stopped
        // reading) is no reader of ours going away: it used to end the run
        // quietly with exit status 0.
        let upload = anyhow::Error::from(io::Error::from_raw_os_error(libc::EPIPE))
            .context("`virsh vol-upload …` stopped reading the file");
        assert!(!crate::cli::exit::is_broken_pipe(&upload), "{upload:#}");
        let mut listing = Sink::new(Closed);
        let written = writeln!(listing, "a row").map_err(anyhow::Error::from);
        assert!(crate::cli::exit::is_broken_pipe(&written.unwrap_err()));
        assert_eq!(
            format!("{error:#}"),
            "while asking: Broken pipe (os error 32)"
        );
    }
}
