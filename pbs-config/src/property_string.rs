//! Property strings: `key=value,key2=value2` values with an optional default key.
//!
//! Values may be quoted (`key="a,b"`, with `\"`, `\\` and `\n` escapes) so that they can
//! contain commas. Printing writes keys in ascending order, quoting values that need it.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::section_config::Property;

/// The keys allowed in one kind of property string.
#[derive(Clone, Copy, Debug)]
pub struct PropertyStringSchema {
    /// Allowed keys (array properties are not supported here).
    pub properties: &'static [Property],
    /// Key assigned to a value given without `key=`.
    pub default_key: Option<&'static str>,
}

impl PropertyStringSchema {
    /// Parses a property string into a JSON object, checking keys and values.
    pub fn parse(&self, text: &str) -> Result<Map<String, Value>, String> {
        let mut object = Map::new();
        for (key, raw) in split_items(text)? {
            let key = match key {
                Some(key) => key,
                None => self
                    .default_key
                    .ok_or_else(|| {
                        format!(
                            "value '{raw}' without key, but schema does not define a default key"
                        )
                    })?
                    .to_string(),
            };
            let prop = self
                .properties
                .iter()
                .find(|p| p.name == key)
                .ok_or_else(|| format!("unknown property '{key}'"))?;
            let value = prop
                .kind
                .parse(&raw)
                .map_err(|err| format!("property '{key}': {err}"))?;
            if object.insert(key.clone(), value).is_some() {
                return Err(format!("duplicate key '{key}'"));
            }
        }
        for prop in self.properties {
            if !prop.optional && !object.contains_key(prop.name) {
                return Err(format!(
                    "property '{}' is missing and it is not optional.",
                    prop.name
                ));
            }
        }
        Ok(object)
    }

    /// Parses a property string into a typed value.
    pub fn parse_typed<T: DeserializeOwned>(&self, text: &str) -> Result<T, String> {
        let object = self.parse(text)?;
        serde_json::from_value(Value::Object(object)).map_err(|err| err.to_string())
    }

    /// Prints a typed value (serialized to an object) as a property string.
    pub fn print<T: Serialize>(&self, data: &T) -> Result<String, String> {
        let value = serde_json::to_value(data).map_err(|err| err.to_string())?;
        let object = value
            .as_object()
            .ok_or_else(|| "property string data is not an object".to_string())?;
        let mut keys: Vec<&String> = object.keys().collect();
        keys.sort();
        let mut out = String::new();
        for key in keys {
            let value = &object[key];
            let prop = self
                .properties
                .iter()
                .find(|p| p.name == key)
                .ok_or_else(|| format!("unknown property '{key}'"))?;
            let text = match value {
                Value::Null => continue,
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => return Err(format!("property '{key}': unsupported value type")),
            };
            prop.kind
                .verify(value)
                .map_err(|err| format!("property '{key}': {err}"))?;
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(key);
            out.push('=');
            push_value(&mut out, &text);
        }
        Ok(out)
    }
}

fn needs_quoting(value: &str) -> bool {
    value.contains(['"', '\\', '\n', ','])
}

fn push_value(out: &mut String, value: &str) {
    if !needs_quoting(value) {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Splits into (key, value) items; a missing key means "the default key".
fn split_items(text: &str) -> Result<Vec<(Option<String>, String)>, String> {
    let mut items = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after_comma) = rest.strip_prefix(',') {
            rest = after_comma;
            continue;
        }
        let (key, value_start) = if rest.starts_with('"') {
            (None, rest)
        } else {
            match rest.find([',', '=']) {
                Some(pos) if rest.as_bytes()[pos] == b'=' => {
                    (Some(rest[..pos].to_string()), &rest[pos + 1..])
                }
                _ => (None, rest),
            }
        };
        let (value, remainder) = if let Some(quoted) = value_start.strip_prefix('"') {
            let (value, after) = parse_quoted(quoted)?;
            if !(after.is_empty() || after.starts_with(',')) {
                return Err("garbage after quoted value".to_string());
            }
            (value, after)
        } else {
            let end = value_start.find(',').unwrap_or(value_start.len());
            (value_start[..end].to_string(), &value_start[end..])
        };
        if let Some(key) = &key {
            if key.is_empty() {
                return Err("empty key in property string".to_string());
            }
        }
        items.push((key, value));
        rest = remainder;
    }
    Ok(items)
}

/// Parses the body of a quoted value (after the opening quote); returns value and remainder.
fn parse_quoted(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((pos, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[pos + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, c)) => value.push(c),
                None => break,
            },
            c => value.push(c),
        }
    }
    Err("unterminated quoted value in property string".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::section_config::ValueKind;

    const PROPS: &[Property] = &[
        Property::optional("message", ValueKind::ANY_STRING),
        Property::required("type", ValueKind::ANY_STRING),
        Property::optional(
            "n",
            ValueKind::Integer {
                min: Some(0),
                max: None,
            },
        ),
    ];
    const SCHEMA: PropertyStringSchema = PropertyStringSchema {
        properties: PROPS,
        default_key: Some("type"),
    };

    #[test]
    fn parse_with_default_key_and_quotes() {
        let o = SCHEMA.parse("read-only").unwrap();
        assert_eq!(Value::Object(o), serde_json::json!({"type": "read-only"}));
        let o = SCHEMA
            .parse("offline,message=\"a, \\\"b\\\" \\\\c\",n=3")
            .unwrap();
        assert_eq!(
            Value::Object(o),
            serde_json::json!({"type": "offline", "message": "a, \"b\" \\c", "n": 3})
        );
        let o = SCHEMA.parse("message=hi,type=offline").unwrap();
        assert_eq!(o["message"], "hi");
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            SCHEMA.parse("type=a,type=b").unwrap_err(),
            "duplicate key 'type'"
        );
        assert_eq!(
            SCHEMA.parse("type=a,bogus=1").unwrap_err(),
            "unknown property 'bogus'"
        );
        assert_eq!(
            SCHEMA.parse("message=x").unwrap_err(),
            "property 'type' is missing and it is not optional."
        );
        assert!(SCHEMA.parse("type=a,n=-1").is_err());
        assert!(SCHEMA.parse("type=\"a").is_err());
        assert!(SCHEMA.parse("type=\"a\"b").is_err());
        let no_default = PropertyStringSchema {
            properties: PROPS,
            default_key: None,
        };
        assert!(no_default.parse("x").is_err());
    }

    #[test]
    fn print_sorted_and_quoted() {
        let data = serde_json::json!({"type": "offline", "message": "a,\"b\"", "n": null});
        let text = SCHEMA.print(&data).unwrap();
        assert_eq!(text, "message=\"a,\\\"b\\\"\",type=offline");
        let back = SCHEMA.parse(&text).unwrap();
        assert_eq!(back["message"], "a,\"b\"");
        assert_eq!(
            SCHEMA.print(&serde_json::json!({"type": "x"})).unwrap(),
            "type=x"
        );
    }
}
