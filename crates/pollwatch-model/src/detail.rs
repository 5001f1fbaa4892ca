//! How much of a hostile report a rejection or flag may carry. A detail travels in an AMQP
//! header, a log line and the review queue, so it is short and printable whatever the input:
//! quoted input is cut to [`MAX_ECHO_CHARS`] characters, a path to [`MAX_PATH_BYTES`] bytes, and
//! the whole `{code} at {path}: {message}` to [`MAX_DETAIL_BYTES`] bytes. Control characters are
//! escaped, so that a detail never holds a raw line break or NUL.

use std::fmt::Write as _;

/// Most characters of one piece of input that a message quotes.
pub const MAX_ECHO_CHARS: usize = 100;
/// Longest path of a rejection or flag, in bytes.
pub const MAX_PATH_BYTES: usize = 200;
/// Longest rejection or flag as displayed (`{code} at {path}: {message}`), in bytes.
pub const MAX_DETAIL_BYTES: usize = 1024;

/// What ends a path or message that was cut to its limit.
const CUT: &str = "… (cut)";

/// Quotes a piece of input for a message: in backticks, control characters escaped, and cut
/// after [`MAX_ECHO_CHARS`] characters with its full length said, e.g.
/// `` `aaaa…` (200000 characters) ``. Short, printable input comes back only quoted.
pub fn echo(input: &str) -> String {
    let mut out = String::with_capacity(input.len().min(4 * MAX_ECHO_CHARS) + 2);
    out.push('`');
    let mut chars = input.chars();
    for c in chars.by_ref().take(MAX_ECHO_CHARS) {
        push_printable(&mut out, c);
    }
    if chars.next().is_some() {
        let _ = write!(out, "…` ({} characters)", input.chars().count());
    } else {
        out.push('`');
    }
    out
}

/// A path bounded for a rejection or flag: control characters escaped, cut to
/// [`MAX_PATH_BYTES`] bytes. A path holds the names of the input's keys, so it can be as long as
/// the input.
pub(crate) fn bounded_path(path: String) -> String {
    bounded(path, MAX_PATH_BYTES)
}

/// A message bounded so that `{code} at {path}: {message}` fits in [`MAX_DETAIL_BYTES`].
pub(crate) fn bounded_message(code: &str, path: &str, message: String) -> String {
    let fixed = code.len() + " at ".len() + path.len() + ": ".len();
    bounded(message, MAX_DETAIL_BYTES.saturating_sub(fixed))
}

/// `text` with control characters escaped, cut on a character boundary to `limit` bytes with
/// [`CUT`] at its end. Text that is already printable and short enough is returned as it is.
fn bounded(text: String, limit: usize) -> String {
    if text.len() <= limit && !text.chars().any(char::is_control) {
        return text;
    }
    // Escaping only lengthens, so the work stops one character past the limit.
    let mut out = String::with_capacity(limit.min(text.len()) + 16);
    for c in text.chars() {
        push_printable(&mut out, c);
        if out.len() > limit {
            break;
        }
    }
    if out.len() <= limit {
        return out;
    }
    let mut end = limit.saturating_sub(CUT.len());
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out.push_str(CUT);
    out
}

fn push_printable(out: &mut String, c: char) {
    if c.is_control() {
        let _ = write!(out, "{}", c.escape_debug());
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_printable_input_is_only_quoted() {
        assert_eq!(echo("lunch"), "`lunch`");
        assert_eq!(echo("жж"), "`жж`");
        assert_eq!(echo(""), "``");
    }

    #[test]
    fn long_input_is_cut_with_its_length_said() {
        let echoed = echo(&"a".repeat(200_000));
        assert_eq!(echoed, format!("`{}…` (200000 characters)", "a".repeat(MAX_ECHO_CHARS)));
    }

    #[test]
    fn input_of_exactly_the_limit_is_not_cut() {
        let input = "ж".repeat(MAX_ECHO_CHARS);
        assert_eq!(echo(&input), format!("`{input}`"));
    }

    #[test]
    fn control_characters_in_input_are_escaped() {
        assert_eq!(echo("a\nb\0c\u{1b}"), r"`a\nb\0c\u{1b}`");
    }

    #[test]
    fn a_long_path_is_cut_on_a_character_boundary_and_marked() {
        let path = bounded_path("ж".repeat(1_000));
        assert!(path.len() <= MAX_PATH_BYTES, "{}", path.len());
        assert!(path.ends_with(CUT), "{path}");
    }

    #[test]
    fn a_short_path_is_unchanged() {
        assert_eq!(bounded_path("body.protocols[0].votes.japarov".into()), "body.protocols[0].votes.japarov");
    }

    #[test]
    fn a_path_with_a_line_break_is_escaped() {
        assert_eq!(bounded_path("answers.Q\n1".into()), r"answers.Q\n1");
    }

    #[test]
    fn a_message_is_cut_so_that_the_whole_detail_fits() {
        let path = "p".repeat(MAX_PATH_BYTES);
        let message = bounded_message("invalid_value", &path, "\0".repeat(100_000));
        let detail = format!("invalid_value at {path}: {message}");
        assert!(detail.len() <= MAX_DETAIL_BYTES, "{}", detail.len());
        assert!(message.ends_with(CUT), "{message}");
    }
}
