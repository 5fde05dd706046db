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

/// Removes control characters (escape sequences, newlines, C1 controls) and
/// bidirectional overrides from text a guest or a remote host controls, so
/// it cannot move the cursor, recolour, or visually reorder a terminal line.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|&c| !c.is_control() && !is_bidi_control(c))
        .collect()
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(sanitize("Ubuntu\u{1b}[2J 22.04\n"), "Ubuntu[2J 22.04");
        assert_eq!(sanitize("a\u{9b}b\u{7f}c\td"), "abcd");
        assert_eq!(sanitize("evil\u{202e}txt.exe"), "eviltxt.exe");
        assert_eq!(sanitize("Débian — ok"), "Débian — ok");
    }
}
