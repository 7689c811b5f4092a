//! Text normalisation before chunking: HTML to text for `text/html`, Unicode NFC, and
//! whitespace (runs of spaces and tabs become one space, three or more newlines become two,
//! each line trimmed). The content hash is taken over the result, so two versions that
//! differ only in markup or spacing are recognised as unchanged.

use unicode_normalization::UnicodeNormalization;

/// Elements whose content is never text.
const SKIPPED_ELEMENTS: [&str; 6] = ["script", "style", "head", "noscript", "template", "svg"];
/// Elements that end a block of text: they become a line break.
const BLOCK_ELEMENTS: [&str; 24] = [
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "blockquote",
    "pre",
    "hr",
    "title",
    "dd",
    "dt",
];

/// The text a document is chunked and hashed from.
pub fn normalize(body: &str, content_type: &str) -> String {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let text = if mime == "text/html" || mime == "application/xhtml+xml" {
        html_to_text(body)
    } else {
        body.to_owned()
    };
    let nfc: String = text.nfc().collect();
    collapse_whitespace(&nfc)
}

fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_lines = 0;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            blank_lines += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_lines > 0 { "\n\n" } else { "\n" });
        }
        blank_lines = 0;
        out.push_str(&words.join(" "));
    }
    out
}

/// Text content of an HTML document: tags dropped, block elements as line breaks, other
/// whitespace collapsed as a browser renders it, `script`/`style`/`head` content skipped,
/// comments dropped, entities decoded.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    let text = |out: &mut String, t: &str| {
        let decoded = decode_entities(t);
        let mut last_space = out.ends_with([' ', '\n']) || out.is_empty();
        for c in decoded.chars() {
            if c.is_whitespace() {
                if !last_space {
                    out.push(' ');
                    last_space = true;
                }
            } else {
                out.push(c);
                last_space = false;
            }
        }
    };
    while let Some(lt) = rest.find('<') {
        text(&mut out, &rest[..lt]);
        rest = &rest[lt..];
        // `<` not followed by a tag name, `/` or `!` is text ("x < y"), as browsers read it.
        if !rest[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '!') {
            text(&mut out, "<");
            rest = &rest[1..];
            continue;
        }
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        let Some(gt) = rest.find('>') else {
            // An unclosed tag runs to the end of the input: nothing of it is text.
            rest = "";
            break;
        };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        let closing = tag.starts_with('/');
        let name = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if !closing && SKIPPED_ELEMENTS.contains(&name.as_str()) && !tag.ends_with('/') {
            // Raw content up to the closing tag, whatever it contains (`<` in scripts).
            rest = match find_closing_tag(rest, &name) {
                Some(i) => rest[i..].find('>').map_or("", |g| &rest[i + g + 1..]),
                None => "",
            };
        } else if BLOCK_ELEMENTS.contains(&name.as_str()) {
            while out.ends_with(' ') {
                out.pop();
            }
            out.push('\n');
        } else if name == "td" || name == "th" {
            text(&mut out, " ");
        }
    }
    text(&mut out, rest);
    out
}

/// Where `</name` starts in `text`, matched without regard to ASCII case. Scans `text`
/// once without copying it (a copy per skipped element made a document of many small
/// `<style>` elements quadratic).
fn find_closing_tag(text: &str, name: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let name = name.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find("</").map(|i| from + i) {
        let candidate = &bytes[i + 2..];
        if candidate.len() >= name.len() && candidate[..name.len()].eq_ignore_ascii_case(name) {
            return Some(i);
        }
        from = i + 2;
    }
    None
}

/// Longest entity decoded (`&hellip;`, `&#x10FFFF;`): the `;` is looked for only this far,
/// so each `&` costs a bounded look-ahead and the text is decoded in linear time.
const MAX_ENTITY_BYTES: usize = 10;

/// Decodes the named entities that matter for text and every numeric one.
fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.as_bytes()[1..]
            .iter()
            .take(MAX_ENTITY_BYTES + 1)
            .position(|&b| b == b';')
            .and_then(|end| {
                let entity = &rest[1..1 + end];
                let c = match entity {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    "nbsp" => Some(' '),
                    "mdash" => Some('—'),
                    "ndash" => Some('–'),
                    "hellip" => Some('…'),
                    "copy" => Some('©'),
                    _ => entity
                        .strip_prefix("#x")
                        .or_else(|| entity.strip_prefix("#X"))
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                        .and_then(char::from_u32),
                };
                c.map(|c| (c, end + 2))
            });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_nfc_with_collapsed_whitespace() {
        // "e" + combining acute becomes the single code point "é".
        let text = "  Caf\u{0065}\u{0301}\t\t au   lait \n\n\n\n second  paragraph\r\nline ";
        assert_eq!(
            normalize(text, "text/plain"),
            "Caf\u{e9} au lait\n\nsecond paragraph\nline"
        );
    }

    #[test]
    fn html_becomes_its_text() {
        let html = r#"<html><head><title>T</title><style>p{color:red}</style></head>
            <body><h1>Kafka &amp; Weaviate</h1><!-- hidden --><p>Vectors&nbsp;for <b>every</b>
            chunk &#8212; &#x2713;</p><script>alert("x<y")</script><p>a &lt; b &unknown; c</p></body></html>"#;
        assert_eq!(
            normalize(html, "text/html; charset=utf-8"),
            "Kafka & Weaviate\n\nVectors for every chunk — ✓\n\na < b &unknown; c"
        );
    }

    #[test]
    fn broken_html_keeps_its_text() {
        assert_eq!(normalize("x < y and <b>z", "text/html"), "x < y and z");
        assert_eq!(
            normalize("<p>unclosed <!-- comment", "text/html"),
            "unclosed"
        );
        assert_eq!(normalize("", "text/html"), "");
    }

    #[test]
    fn hostile_markup_is_handled_in_one_pass() {
        // Each of these took time quadratic in its size (a look-ahead over the rest of the
        // text per `&`, a lowercased copy of the rest per skipped element): at 2 MB this
        // test ran for minutes; now each input is read once.
        let ampersands = "&".repeat(2_000_000);
        assert_eq!(normalize(&ampersands, "text/html"), ampersands);
        let almost = "&amp".repeat(500_000);
        assert_eq!(normalize(&almost, "text/html"), almost);
        let styles = "<style>p{}</style>x ".repeat(100_000);
        assert_eq!(
            normalize(&styles, "text/html"),
            "x ".repeat(100_000).trim_end()
        );
        let unclosed = "<STYLE>a".repeat(100_000);
        assert_eq!(normalize(&unclosed, "text/html"), "");
        // Closing tags match in any case, and only for the element opened.
        assert_eq!(
            normalize("<script>a</scr</b></SCRIPT>after", "text/html"),
            "after"
        );
        assert_eq!(normalize("a&#x2713;&copy;&#1;", "text/html"), "a✓©\u{1}");
    }

    #[test]
    fn markdown_is_left_as_text() {
        assert_eq!(
            normalize("# Title\n\n*a* <b>", "text/markdown"),
            "# Title\n\n*a* <b>"
        );
    }
}
