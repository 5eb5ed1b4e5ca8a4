//! One module per `bns` subcommand.

pub mod distill;
pub mod eval;
pub mod model;
pub mod pairs;
pub mod pipeline;
pub mod publish;
pub mod sample;
pub mod solver;
pub mod train;
pub mod truth;

/// `text` from a file, safe to print to a terminal: control characters (ESC, BEL, CR, newlines,
/// …) are written as Rust escapes (`\u{1b}`, `\r`, `\n`), so a file cannot move the cursor,
/// retitle the window or fake lines of output.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}
