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
    scaled(kib as f64 / 1024.0, 1)
}

/// Bytes as `512 B`, `368.0 KiB`, `4.2 GiB`, by the rule of [`format_kib`].
pub fn format_bytes(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    scaled(bytes as f64 / 1024.0, 0)
}

/// `value` in `UNITS[unit]`, moved up a unit while it rounds to 1024 or more.
fn scaled(mut value: f64, mut unit: usize) -> String {
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
/// format character (bidirectional controls, zero-width spaces and
/// joiners, the BOM, tags) is shown as a visible escape (`\t`, `\n`,
/// `\u{1b}`, `\u{202e}`, `\u{200b}`), so it can neither move the cursor,
/// recolour or reorder the line, nor vanish: neither `web<TAB>prod` nor
/// `web<ZERO WIDTH SPACE>prod` may read as another VM's `webprod`.
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

/// Control characters (C0, DEL, C1: category Cc) and format characters
/// (category Cf, the bidirectional controls among them): what a terminal
/// acts on or shows as nothing.
pub fn is_unsafe_on_a_terminal(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    // ASCII's only ones are C0 and DEL: skip the table's search for it.
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    matches!(
        c.general_category(),
        GeneralCategory::Control | GeneralCategory::Format
    )
}

/// Writes `value` as pretty JSON in which every control and format
/// character ([`is_unsafe_on_a_terminal`]) is escaped as `\uXXXX` (a
/// surrogate pair beyond U+FFFF): a terminal shows them as text, and the
/// decoded strings stay exactly what libvirt holds. (serde_json escapes
/// C0 alone and writes the others raw.) Buffered: stdout is
/// line-buffered, and 1005 `isos` rows were 22 000 writes.
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
                for unit in c.encode_utf16(&mut [0; 2]) {
                    write!(writer, "\\u{unit:04x}")?;
                }
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
                .any(|c| c != '\n' && is_unsafe_on_a_terminal(c))
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back[0]["name"], name, "decodes to what libvirt holds");
        assert!(
            text.starts_with("[\n  {\n    \"name\""),
            "pretty as before: {text}"
        );
    }

    /// Every format character (general category Cf) of Unicode 15.1's
    /// DerivedGeneralCategory.txt, written out here as the known list the
    /// table in use must cover: invisible, each can make one name print
    /// as another's.
    const FORMAT_CHARACTERS: [(u32, u32); 21] = [
        (0x00ad, 0x00ad),
        (0x0600, 0x0605),
        (0x061c, 0x061c),
        (0x06dd, 0x06dd),
        (0x070f, 0x070f),
        (0x0890, 0x0891),
        (0x08e2, 0x08e2),
        (0x180e, 0x180e),
        (0x200b, 0x200f),
        (0x202a, 0x202e),
        (0x2060, 0x2064),
        (0x2066, 0x206f),
        (0xfeff, 0xfeff),
        (0xfff9, 0xfffb),
        (0x110bd, 0x110bd),
        (0x110cd, 0x110cd),
        (0x13430, 0x1343f),
        (0x1bca0, 0x1bca3),
        (0x1d173, 0x1d17a),
        (0xe0001, 0xe0001),
        (0xe0020, 0xe007f),
    ];

    #[test]
    fn every_format_character_is_escaped_everywhere() {
        let format_characters = FORMAT_CHARACTERS
            .iter()
            .flat_map(|&(first, last)| first..=last)
            .map(|code| char::from_u32(code).unwrap());
        for c in format_characters {
            let name = format!("web{c}prod");
            let escape = format!("\\u{{{:x}}}", u32::from(c));
            assert_eq!(
                sanitize(&name),
                format!("web{escape}prod"),
                "U+{:04X}",
                u32::from(c)
            );
            let mut json = Vec::new();
            write_json(&mut json, &name).unwrap();
            let json = String::from_utf8(json).unwrap();
            // Beyond U+FFFF, JSON's escape is a UTF-16 surrogate pair.
            let escape: String = c
                .encode_utf16(&mut [0; 2])
                .iter()
                .map(|unit| format!("\\u{unit:04x}"))
                .collect();
            assert_eq!(json, format!("\"web{escape}prod\"\n"));
            let back: String = serde_json::from_str(&json).unwrap();
            assert_eq!(back, name, "decodes to the name");
        }
        // Visible neighbours stay as they are: letters, dashes, spaces.
        for text in [
            "Débian — ok",
            "a\u{2010}b",
            "a\u{a0}b",
            "ĳ\u{1f600}",
            "\u{10ffff}",
        ] {
            assert_eq!(sanitize(text), text);
        }
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
    fn byte_boundaries() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.0 KiB");
        assert_eq!(format_bytes(376_832), "368.0 KiB");
        assert_eq!(format_bytes(1024 * 1024 - 1), "1.0 MiB", "rounds up a unit");
        assert_eq!(format_bytes(4 << 30), "4.0 GiB");
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
