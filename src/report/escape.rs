//! The escaping helpers: what users wrote (agent names, statuses, stop reasons, paths, the
//! mission name) reaches a report only through [`escape_md`] (Markdown) and [`escape_xml`]
//! (HTML and SVG). One file, below the formats, so each format escapes the same way.

/// Text for a Markdown table cell or line: the characters that would end a cell, open code,
/// emphasis, a link or raw HTML are escaped, and line breaks become spaces so a row stays one
/// row.
pub fn escape_md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' | '`' | '\\' | '*' | '_' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\r' | '\n' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// Text for HTML and SVG, in content and in quoted attributes. Control characters that XML 1.0
/// forbids are dropped, so a hostile name cannot make the SVG unparseable.
pub fn escape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_cells_cannot_be_broken_out_of() {
        assert_eq!(escape_md("<script>a|b"), "&lt;script&gt;a\\|b");
        assert_eq!(escape_md("x`y`\nz"), "x\\`y\\` z");
        assert_eq!(
            escape_md("[a](http://x) *b* c_d"),
            "\\[a\\](http://x) \\*b\\* c\\_d"
        );
        assert_eq!(escape_md("a&b\\"), "a&amp;b\\\\");
    }

    #[test]
    fn xml_text_is_escaped_and_stays_well_formed() {
        assert_eq!(
            escape_xml(r#"<script>"a"&'b'</script>"#),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;&lt;/script&gt;"
        );
        assert_eq!(escape_xml("a\u{1}b\u{1b}c\nd"), "abc\nd");
    }
}
