//! Query strings and path components of API requests.

use anyhow::{bail, Result};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

/// Characters escaped in query strings and path components.
const QUERY_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one path component or query value.
pub fn encode_component(text: &str) -> String {
    utf8_percent_encode(text, QUERY_ENCODE_SET).to_string()
}

/// Form-encodes the members of a JSON object (arrays as repeated keys, `null` skipped).
pub fn query_string(params: &Value) -> Result<String> {
    let Value::Object(map) = params else {
        bail!("request parameters must be an object");
    };
    let mut parts = Vec::new();
    for (key, value) in map {
        let mut push = |v: &Value| match v {
            Value::Null => {}
            Value::String(s) => parts.push(format!("{key}={}", encode_component(s))),
            Value::Bool(b) => parts.push(format!("{key}={}", u8::from(*b))),
            other => parts.push(format!("{key}={}", encode_component(&other.to_string()))),
        };
        match value {
            Value::Array(items) => items.iter().for_each(&mut push),
            other => push(other),
        }
    }
    Ok(parts.join("&"))
}

/// `path` with the encoded `params` appended as query string (if any).
pub fn path_with_query(path: &str, params: Option<&Value>) -> Result<String> {
    let mut uri = path.to_string();
    if let Some(params) = params {
        let query = query_string(params)?;
        if !query.is_empty() {
            uri.push('?');
            uri.push_str(&query);
        }
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_strings() {
        let params =
            json!({"running": true, "start": 0, "upid": "UPID:n:1:a b:", "x": ["a", "b/c"]});
        assert_eq!(
            query_string(&params).unwrap(),
            "running=1&start=0&upid=UPID%3An%3A1%3Aa%20b%3A&x=a&x=b%2Fc"
        );
        assert!(query_string(&json!([1])).is_err());
    }

    #[test]
    fn paths_with_query() {
        assert_eq!(path_with_query("a/b", None).unwrap(), "a/b");
        assert_eq!(path_with_query("a/b", Some(&json!({}))).unwrap(), "a/b");
        assert_eq!(
            path_with_query("a", Some(&json!({"ns": "x/y", "n": null}))).unwrap(),
            "a?ns=x%2Fy"
        );
    }
}
