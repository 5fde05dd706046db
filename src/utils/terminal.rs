//! Text a guest or a remote host controls, made safe for a terminal.

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

#[cfg(test)]
mod tests {
    use super::*;

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
