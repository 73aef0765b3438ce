//! Canonical JSON: the byte-exact serialization that manifest signatures are computed over.
//!
//! Object members are sorted by key (byte-wise), there is no whitespace, scalars use the
//! compact serde_json encoding and `null` is rejected anywhere.

use anyhow::{bail, Error};
use serde_json::Value;

/// Serializes `value` as canonical JSON.
pub fn to_canonical_json(value: &Value) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    write_canonical_json(value, &mut out)?;
    Ok(out)
}

fn write_canonical_json(value: &Value, out: &mut Vec<u8>) -> Result<(), Error> {
    match value {
        Value::Null => bail!("got unexpected null value"),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            serde_json::to_writer(&mut *out, value)?;
        }
        Value::Array(list) => {
            out.push(b'[');
            for (i, item) in list.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical_json(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sorted explicitly: the map's own order depends on serde_json features.
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                write_canonical_json(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canonical(value: Value) -> String {
        String::from_utf8(to_canonical_json(&value).unwrap()).unwrap()
    }

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        let value = json!({
            "b": [1, true, "x", {"z": 1, "a": -2}],
            "a": {"y": 1.5, "B": 0},
            "A": "",
        });
        assert_eq!(
            canonical(value),
            r#"{"A":"","a":{"B":0,"y":1.5},"b":[1,true,"x",{"a":-2,"z":1}]}"#
        );
        assert_eq!(canonical(json!({})), "{}");
        assert_eq!(canonical(json!([])), "[]");
        assert_eq!(canonical(json!(u64::MAX)), "18446744073709551615");
    }

    #[test]
    fn escapes_strings_compactly() {
        let value = json!({"k\"ey\n": "quote \" backslash \\ slash / tab \t nl \n cr \r \u{8}\u{c} ctl \u{1} del \u{7f} ümlaut"});
        assert_eq!(
            canonical(value),
            "{\"k\\\"ey\\n\":\"quote \\\" backslash \\\\ slash / tab \\t nl \\n cr \\r \\b\\f ctl \\u0001 del \u{7f} ümlaut\"}"
        );
    }

    #[test]
    fn keys_sort_bytewise() {
        // 'Z' (0x5a) < '_' (0x5f) < 'a' (0x61) < 'é' (0xc3 0xa9)
        let value = json!({"é": 1, "a": 2, "_": 3, "Z": 4});
        assert_eq!(canonical(value), r#"{"Z":4,"_":3,"a":2,"é":1}"#);
    }

    #[test]
    fn rejects_null_anywhere() {
        for value in [
            json!(null),
            json!({"a": null}),
            json!([1, null]),
            json!({"a": {"b": [null]}}),
        ] {
            let err = to_canonical_json(&value).unwrap_err();
            assert_eq!(err.to_string(), "got unexpected null value");
        }
    }
}
