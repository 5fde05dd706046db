//! Formatting for people: sizes, durations, and untrusted text made safe
//! for a terminal.

const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];

/// KiB as `512 KiB`, `1.5 MiB`, `8.0 GiB`. The unit is the largest in which
/// the value, rounded to one decimal, stays below 1024, so 1048575 KiB reads
/// `1.0 GiB` rather than `1024.0 MiB`.
pub fn format_kib(kib: u64) -> String {
    if kib < 1024 {
        return format!("{kib} KiB");
    }
    let mut value = kib as f64 / 1024.0;
    let mut unit = 1;
    while unit + 1 < UNITS.len() && (value * 10.0).round() / 10.0 >= 1024.0 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// CPU time as `1d 10h 5m`, `2h 0m 7s`, `3m 12s`, `41s`: the three most
/// significant units from the largest that is not zero.
pub fn format_cpu_time(nanoseconds: u64) -> String {
    let seconds = nanoseconds / 1_000_000_000;
    let parts = [
        (seconds / 86_400, "d"),
        (seconds / 3_600 % 24, "h"),
        (seconds / 60 % 60, "m"),
        (seconds % 60, "s"),
    ];
    let first = parts.iter().position(|(value, _)| *value > 0).unwrap_or(3);
    parts[first..]
        .iter()
        .take(3)
        .map(|(value, unit)| format!("{value}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Text a guest or a remote host controls, made safe for a terminal: each
/// control character (escape sequences, newlines, C1 controls) and
/// bidirectional control is shown as a visible escape (`\t`, `\n`,
/// `\u{1b}`, `\u{202e}`), so it can neither move the cursor, recolour or
/// reorder the line, nor vanish: `web<TAB>prod` must not read as another
/// VM's `webprod`.
pub fn sanitize(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => shown.push_str("\\t"),
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            c if is_unsafe_on_a_terminal(c) => {
                shown.push_str(&format!("\\u{{{:x}}}", u32::from(c)))
            }
            c => shown.push(c),
        }
    }
    shown
}

/// Control characters (C0, DEL, C1) and bidirectional controls.
pub fn is_unsafe_on_a_terminal(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Writes `value` as pretty JSON in which every control character (C0, DEL,
/// C1) and bidirectional control is escaped as `\uXXXX`: a terminal shows
/// them as text, and the decoded strings stay exactly what libvirt holds.
/// (serde_json escapes C0 alone and writes the others raw.) Buffered:
/// stdout is line-buffered, and 1005 `isos` rows were 22 000 writes.
pub fn write_json(
    out: &mut impl std::io::Write,
    value: &impl serde::Serialize,
) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut serializer =
        serde_json::Serializer::with_formatter(&mut out, EscapingFormatter(PrettyFormatter::new()));
    value
        .serialize(&mut serializer)
        .map_err(std::io::Error::from)?;
    writeln!(out)?;
    out.flush()
}

use serde_json::ser::{Formatter, PrettyFormatter};

/// serde_json's pretty layout, with the escapes of [`write_json`].
struct EscapingFormatter(PrettyFormatter<'static>);

impl Formatter for EscapingFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut plain = 0;
        for (at, c) in fragment.char_indices() {
            if is_unsafe_on_a_terminal(c) {
                writer.write_all(&fragment.as_bytes()[plain..at])?;
                write!(writer, "\\u{:04x}", u32::from(c))?;
                plain = at + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[plain..])
    }

    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object_value(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// C1 (U+009B is CSI) and bidi overrides used to reach the terminal raw.
    #[test]
    fn json_escapes_every_control_and_bidi_character() {
        let name = "web\tprod\u{9b}31m\u{202e}gnp.exe\u{7f}é";
        let mut out = Vec::new();
        write_json(&mut out, &serde_json::json!([{ "name": name }])).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(r#""web\tprod\u009b31m\u202egnp.exe\u007fé""#),
            "{text}"
        );
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' || is_bidi_control(c))
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back[0]["name"], name, "decodes to what libvirt holds");
        assert!(
            text.starts_with("[\n  {\n    \"name\""),
            "pretty as before: {text}"
        );
    }

    #[test]
    fn kib_boundaries() {
        assert_eq!(format_kib(0), "0 KiB");
        assert_eq!(format_kib(512), "512 KiB");
        assert_eq!(format_kib(1023), "1023 KiB");
        assert_eq!(format_kib(1024), "1.0 MiB");
        assert_eq!(format_kib(1536), "1.5 MiB");
        assert_eq!(format_kib(1024 * 1023), "1023.0 MiB");
        assert_eq!(format_kib(1024 * 1024 - 52), "1023.9 MiB");
        assert_eq!(format_kib(1024 * 1024 - 1), "1.0 GiB", "rounds up a unit");
        assert_eq!(format_kib(1024 * 1024), "1.0 GiB");
        assert_eq!(format_kib(8 * 1024 * 1024), "8.0 GiB");
        assert_eq!(format_kib(1024 * 1024 * 1024), "1.0 TiB");
        assert_eq!(format_kib(u64::MAX), "17179869184.0 TiB", "no larger unit");
    }

    #[test]
    fn cpu_time_boundaries() {
        let s = 1_000_000_000;
        assert_eq!(format_cpu_time(0), "0s");
        assert_eq!(format_cpu_time(s - 1), "0s");
        assert_eq!(format_cpu_time(41 * s), "41s");
        assert_eq!(format_cpu_time(59 * s), "59s");
        assert_eq!(format_cpu_time(60 * s), "1m 0s");
        assert_eq!(format_cpu_time(192 * s), "3m 12s");
        assert_eq!(format_cpu_time(3_599 * s), "59m 59s");
        assert_eq!(format_cpu_time(3_600 * s), "1h 0m 0s");
        assert_eq!(format_cpu_time(7_207 * s), "2h 0m 7s");
        assert_eq!(format_cpu_time(86_399 * s), "23h 59m 59s");
        assert_eq!(format_cpu_time(86_400 * s), "1d 0h 0m");
        assert_eq!(
            format_cpu_time((86_400 + 36_000 + 300 + 9) * s),
            "1d 10h 5m"
        );
        assert_eq!(format_cpu_time(u64::MAX), "213503d 23h 34m");
    }

    #[test]
    fn sanitize_strips_terminal_controls() {
        assert_eq!(
            sanitize("Ubuntu\u{1b}[2J 22.04\n"),
            r"Ubuntu\u{1b}[2J 22.04\n"
        );
        assert_eq!(sanitize("a\u{9b}b\u{7f}c\td\r"), r"a\u{9b}b\u{7f}c\td\r");
        assert_eq!(sanitize("evil\u{202e}txt.exe"), r"evil\u{202e}txt.exe");
        assert_eq!(sanitize("Débian — ok"), "Débian — ok");
    }
}
