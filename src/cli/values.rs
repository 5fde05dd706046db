//! The value parsers the global options and the commands share: durations
//! and regular expressions, refused in one clear line.

use std::time::Duration;

use regex::Regex;

/// The longest duration any option takes: ten years. A deadline is now
/// plus a timeout, and far beyond this it overflows.
const MAX_DURATION: Duration = Duration::from_secs(3650 * 24 * 3600);

/// A regular expression (the `regex` crate's syntax, matched anywhere in
/// the name, as grep does); a bad one is refused naming where it breaks.
pub fn parse_regex(text: &str) -> Result<Regex, String> {
    if let Err(error) = regex_syntax::ast::parse::Parser::new().parse(text) {
        let at = text[..error.span().start.offset].chars().count() + 1;
        return Err(format!("{} at character {at}", error.kind()));
    }
    Regex::new(text).map_err(|error| error.to_string().lines().last().unwrap_or("").to_owned())
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration =
        humantime::parse_duration(text).map_err(|e| format!("{e} (try 5s or 1500ms)"))?;
    if duration.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    if duration > MAX_DURATION {
        return Err("out of range: at most 3650days".to_owned());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An overflowing deadline used to panic (`Instant` + 10^19 s).
    #[test]
    fn durations_out_of_range_are_refused() {
        let error = parse_duration("10000000000000000000s").unwrap_err();
        assert!(error.contains("at most"), "{error}");
        assert!(parse_duration("3650days").is_ok());
        assert!(parse_duration("3651days").is_err());
    }

    #[test]
    fn bad_patterns_name_the_place() {
        assert_eq!(
            parse_regex("web-(a|b").unwrap_err(),
            "unclosed group at character 5"
        );
        assert_eq!(
            parse_regex("x{2,1}").unwrap_err(),
            "invalid repetition count range, the start must be <= the end at character 2"
        );
        assert!(parse_regex("^web-[0-9]+$").unwrap().is_match("web-12"));
    }

    #[test]
    fn durations_reject_zero_and_junk() {
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
