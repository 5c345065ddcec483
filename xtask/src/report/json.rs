//! Just enough JSON for the report: numbers and strings read from `wasmos sim --stats` and
//! criterion's files, and the report written (xtask has no dependencies, so that it builds
//! in seconds).

use std::fmt::Write as _;

use super::{Figure, Goal};

/// The number after `"key":` in `text`.
pub(crate) fn number_after(text: &str, key: &str) -> Option<f64> {
    let at = text.find(&format!("\"{key}\":"))? + key.len() + 3;
    leading_number(&text[at..])
}

/// The number after the word `word` in `text` (`p50 812 us` → 812): a whole word, so
/// that `rss` is not found inside `master_rss`.
pub(crate) fn number_after_word(text: &str, word: &str) -> Option<f64> {
    let starts_word = |at: usize| {
        (text[..at].chars().next_back()).is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    };
    (text.match_indices(&format!("{word} ")))
        .filter(|(at, _)| starts_word(*at))
        .find_map(|(at, _)| leading_number(&text[at + word.len() + 1..]))
}

fn leading_number(text: &str) -> Option<f64> {
    let text = text.trim_start();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
        .unwrap_or(text.len());
    text[..end].parse().ok()
}

/// The string after `"key":` in `text` (no escapes expected: criterion's ids).
pub(crate) fn string_after(text: &str, key: &str) -> Option<String> {
    let at = text.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = text[at..].trim_start().strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `{"sections": [{"title", "figures": [{"what", "value", "unit", "goal", "met", "anchor",
/// "note"}]}]}`; `value` is null when not measured, `goal` is `{"at_most"|"at_least": x}`
/// or null, `met` null without a goal or a value.
pub(crate) fn report(sections: &[(&str, Vec<Figure>)]) -> String {
    let sections: Vec<String> = sections
        .iter()
        .map(|(title, figures)| {
            let figures: Vec<String> = figures.iter().map(figure).collect();
            format!(
                "{{\"title\":{},\"figures\":[\n{}]}}",
                quoted(title),
                figures.join(",\n")
            )
        })
        .collect();
    format!("{{\"sections\":[\n{}]}}\n", sections.join(",\n"))
}

fn figure(f: &Figure) -> String {
    let number = |v: Option<f64>| {
        v.filter(|v| v.is_finite())
            .map_or("null".to_owned(), |v| v.to_string())
    };
    let goal = match f.goal {
        Goal::AtMost(g) => format!("{{\"at_most\":{g}}}"),
        Goal::AtLeast(g) => format!("{{\"at_least\":{g}}}"),
        Goal::None => "null".to_owned(),
    };
    let met = f.met().map_or("null".to_owned(), |m| m.to_string());
    format!(
        "{{\"what\":{},\"value\":{},\"unit\":{},\"goal\":{goal},\"met\":{met},\"anchor\":{},\"note\":{}}}",
        quoted(&f.what),
        number(f.value),
        quoted(f.unit),
        quoted(&f.anchor),
        quoted(&f.note)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_and_strings() {
        let stats = r#"{"stats":{"peak_rss_bytes":167997440,"placements":67765,"wall_ms":2582}}"#;
        assert_eq!(number_after(stats, "placements"), Some(67765.0));
        assert_eq!(number_after(stats, "nope"), None);
        assert_eq!(
            string_after(r#"{"full_id": "a/b/10x1"}"#, "full_id").as_deref(),
            Some("a/b/10x1")
        );
        assert_eq!(
            number_after_word("x/tcp over 9 launches: p50 812.5 us, p99 1900 us", "p99"),
            Some(1900.0)
        );
        assert_eq!(
            number_after_word("master_rss with 10000 virtual agents: rss 51.5 MiB", "rss"),
            Some(51.5)
        );
    }

    #[test]
    fn writes_valid_figures() {
        let f = Figure::new("a \"b\"", 1.5, "ms").goal(Goal::AtMost(2.0));
        assert_eq!(
            figure(&f),
            r#"{"what":"a \"b\"","value":1.5,"unit":"ms","goal":{"at_most":2},"met":true,"anchor":"","note":""}"#
        );
        let m = Figure::missing("x", "B", "why");
        assert!(figure(&m).contains(r#""value":null"#) && figure(&m).contains(r#""met":null"#));
    }
}
