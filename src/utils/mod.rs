//! Safety for untrusted text: on a terminal (`terminal.rs`) and in JSON
//! (`json.rs`). Formatting for tables lives with the rendering
//! (`cli/render.rs`).

mod json;
mod terminal;

pub use json::write_json;
pub use terminal::{is_unsafe_on_a_terminal, sanitize};
