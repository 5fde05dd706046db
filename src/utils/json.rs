//! JSON for people's terminals: serde_json's pretty layout, with every
//! character a terminal would act on escaped.

use serde_json::ser::{Formatter, PrettyFormatter};

use super::terminal::is_unsafe_on_a_terminal;

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
    use crate::utils::terminal::sanitize;

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
}
