//! Text from producers (ids, keys, bodies, error messages) shown on a terminal.

use std::borrow::Cow;

/// `text` safe to print on a terminal: control characters (C0, DEL, C1, which carry
/// escape sequences that can rewrite the screen or the window title) and the Unicode
/// bidirectional overrides (which can reorder what a line appears to say) are shown
/// escaped, as `\u{1b}`; the tenant separator U+0000 as `\0`. Other text is unchanged.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn escape_sequences_and_bidi_overrides_are_shown_not_obeyed() {
        assert_eq!(printable("plain id-1 é 文档"), "plain id-1 é 文档");
        assert!(matches!(printable("plain"), std::borrow::Cow::Borrowed(_)));
        // Clear screen, set the window title, a C1 CSI, DEL, a newline and a tab.
        assert_eq!(
            printable("a\u{1b}[2Jb\u{1b}]0;pwned\u{7}c\u{9b}d\u{7f}e\nf\tg"),
            "a\\u{1b}[2Jb\\u{1b}]0;pwned\\u{7}c\\u{9b}d\\u{7f}e\\u{a}f\\u{9}g"
        );
        assert_eq!(printable("acme\0doc"), "acme\\0doc");
        assert_eq!(printable("abc\u{202e}fed"), "abc\\u{202e}fed");
    }
}
