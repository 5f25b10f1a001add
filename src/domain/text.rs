//! Text helpers every platform and page shares: cutting to a length in characters, escaping
//! HTML's three special characters, removing ANSI escapes. Pure.

/// At most `max` runes of `text`, ending in `…` when cut.
pub fn truncate_runes(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `value` made safe to show between backticks, in a code span: its own backticks become
/// `ˋ` (U+02CB), so a value cannot end the span and turn the rest into Markdown.
pub fn in_code(value: &str) -> String {
    value.replace('`', "\u{2CB}")
}

/// Text as Teams puts it in `text`: `&`, `<`, `>` as entities.
pub fn escape_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Removes ANSI escape sequences (colours, cursor moves) so logs never show `\x1b[31m`.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            // CSI: ESC [ parameters... final byte in @..~
            Some('[') => {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: ESC ] ... BEL or ESC \
            Some(']') => {
                chars.next();
                while let Some(c) = chars.next() {
                    if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            Some(_) => {
                chars.next();
            }
            None => {}
        }
    }
    out
}
