//! Safety for untrusted text: on a terminal (`terminal.rs`) and in JSON
//! (`json.rs`); an error with its causes as text (`chain.rs`). Formatting
//! for tables lives with the rendering (`cli/render.rs`).

mod chain;
mod json;
mod terminal;

pub use chain::with_causes;
pub use json::write_json;
pub use terminal::{is_unsafe_on_a_terminal, sanitize};
