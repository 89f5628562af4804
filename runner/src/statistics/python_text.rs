//! Lists and maps written as Python's `str()` prints them: `[1, 2]`, `{4: 8}`, `{'503': 2}`.
//!
//! The kit writes its frequency maps into `*_summary.json` as such text (so its summaries hold
//! only scalars and `pd.DataFrame(summary, index=[0])` reads them), and its spreadsheet cells
//! hold the same text; `ast.literal_eval` turns them back into Python values. This module only
//! formats.

use std::collections::BTreeMap;

/// `[1, 2]`.
pub fn int_list(items: &[u32]) -> String {
    let parts: Vec<String> = items.iter().map(u32::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// `{4: 8, 8: 16}`: integer keys, bare.
pub fn int_map(map: &BTreeMap<u32, u32>) -> String {
    let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{{}}}", parts.join(", "))
}

/// `{'503': 2, 'timeout': 1}`: text keys, quoted as Python quotes them.
pub fn count_map(map: &BTreeMap<String, u32>) -> String {
    let parts: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{}: {v}", str_repr(k)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Python's `repr()` of a string: single quotes unless the text holds a single quote and no
/// double quote.
pub fn str_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_strings() {
        assert_eq!(int_list(&[]), "[]");
        assert_eq!(int_list(&[1, 2]), "[1, 2]");
        assert_eq!(int_map(&BTreeMap::from([(4, 8), (8, 16)])), "{4: 8, 8: 16}");
        assert_eq!(int_map(&BTreeMap::new()), "{}");
        let codes = BTreeMap::from([("503".to_string(), 2), ("timeout".to_string(), 1)]);
        assert_eq!(count_map(&codes), "{'503': 2, 'timeout': 1}");
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("a'\"b"), "'a\\'\"b'");
    }
}
