//! Qt's indented JSON format, for the parameter dumps inside `Invalid params` errors.
//!
//! The reference broker prints the offending params with `QJsonDocument::toJson()` (indented,
//! four spaces, `"key": value`, a newline after the top-level object). Clients in the field show
//! these texts to people, so the layout is kept. Keys are sorted (serde_json's map is a BTreeMap,
//! as Qt's QVariantMap is ordered).

use serde_json::Value;

/// Formats `value` the way `QJsonDocument(value).toJson(QJsonDocument::Indented)` does.
pub fn to_indented(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, 0, &mut out);
    if matches!(value, Value::Object(_) | Value::Array(_)) {
        out.push('\n');
    }
    out
}

fn write_value(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) => {
            out.push_str("{\n");
            let inner = "    ".repeat(indent + 1);
            for (i, (key, item)) in map.iter().enumerate() {
                out.push_str(&inner);
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                write_value(item, indent + 1, out);
                out.push_str(if i + 1 == map.len() { "\n" } else { ",\n" });
            }
            out.push_str(&"    ".repeat(indent));
            out.push('}');
        }
        Value::Array(items) => {
            out.push_str("[\n");
            let inner = "    ".repeat(indent + 1);
            for (i, item) in items.iter().enumerate() {
                out.push_str(&inner);
                write_value(item, indent + 1, out);
                out.push_str(if i + 1 == items.len() { "\n" } else { ",\n" });
            }
            out.push_str(&"    ".repeat(indent));
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::to_indented;
    use serde_json::json;

    #[test]
    fn object_layout_matches_qt() {
        let v = json!({"uuid": "u", "name": "n", "nested": {"a": [1, "x"]}, "empty": {}});
        assert_eq!(
            to_indented(&v),
            "{\n    \"empty\": {\n    },\n    \"name\": \"n\",\n    \"nested\": {\n        \"a\": [\n            1,\n            \"x\"\n        ]\n    },\n    \"uuid\": \"u\"\n}\n"
        );
    }

    #[test]
    fn empty_object() {
        assert_eq!(to_indented(&json!({})), "{\n}\n");
    }
}
