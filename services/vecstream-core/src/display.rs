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

/// Checks that `name` (a workflow id, model version name or job name) is one plain path
/// component, so a directory built from it stays inside its parent: not empty, not `.` or
/// `..`, no `/`, `\` or control characters, at most 255 bytes. Returns it, or why not.
pub fn path_component(name: &str) -> Result<&str, String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!(
            "{:?} is not a usable name: 1 to 255 bytes, not {}",
            printable(name),
            name.len()
        ));
    }
    if name == "."
        || name == ".."
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control)
    {
        return Err(format!(
            "{:?} cannot name a directory: it must not be . or .., nor contain /, \\ or control \
             characters",
            printable(name)
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod path_tests {
    use super::path_component;

    #[test]
    fn names_that_would_leave_their_directory_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/../../b",
            "a\\b",
            "/abs",
            "a\nb",
            "a\0b",
        ] {
            assert!(path_component(bad).is_err(), "{bad:?}");
        }
        let long = "x".repeat(256);
        assert!(path_component(&long).is_err());
        for good in [
            "finetune-all-MiniLM-L6-v2-1a2b-0123",
            "..hidden-but-plain",
            "v1.2",
        ] {
            assert_eq!(path_component(good), Ok(good));
        }
    }
}
