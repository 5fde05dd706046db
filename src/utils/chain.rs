//! An error with its causes as one line of text, for errors kept as text
//! (a row's `metrics_error`, a step's outcome), where anyhow's `{:#}` is
//! out of reach.

use std::error::Error;

/// `error: its source: that one's source …`, as anyhow's `{:#}` prints a
/// chain: `Display` alone drops the causes, such as the "Permission
/// denied" under "could not run `virsh …`".
pub fn with_causes(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn every_cause_follows_once_in_order_as_anyhow_prints_them() {
        let error = Outer(Middle(std::io::Error::from_raw_os_error(libc::EACCES)));
        let text = with_causes(&error);
        assert_eq!(text, "outer: middle: Permission denied (os error 13)");
        assert_eq!(text, format!("{:#}", anyhow::Error::new(error)));
    }
}
