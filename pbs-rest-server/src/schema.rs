//! Plain-data description of a method's parameters, with the conversion of form strings and
//! the verification of JSON values (error texts as the reference server words them).

use serde_json::{Map, Value};

use crate::error::ParameterError;

/// An extra check on a string value; the error text is reported as is.
pub type StringCheck = fn(&str) -> Result<(), String>;

/// Additional constraint on a string parameter.
#[derive(Clone, Copy, Debug)]
pub enum StringFormat {
    /// The value must be one of these.
    Enum(&'static [&'static str]),
    /// A regex-like check function; fails with `value does not match the regex pattern`.
    Pattern(fn(&str) -> bool),
    /// An arbitrary check function with its own error text.
    Verify(StringCheck),
}

/// The type of one parameter with its constraints.
#[derive(Clone, Debug)]
pub enum ParamKind {
    /// `true/false`; form values `1/on/yes/true`, `0/off/no/false` (case-insensitive).
    Boolean,
    /// A signed integer within optional bounds.
    Integer {
        /// Smallest accepted value.
        minimum: Option<i64>,
        /// Largest accepted value.
        maximum: Option<i64>,
    },
    /// A floating point number within optional bounds.
    Number {
        /// Smallest accepted value.
        minimum: Option<f64>,
        /// Largest accepted value.
        maximum: Option<f64>,
    },
    /// A string; lengths count Unicode characters.
    String {
        /// Minimum number of characters.
        min_length: Option<usize>,
        /// Maximum number of characters.
        max_length: Option<usize>,
        /// Format restriction.
        format: Option<StringFormat>,
    },
    /// A list; in form encoding given by repeating the key.
    Array {
        /// Type of the items.
        items: Box<ParamKind>,
        /// Minimum number of items.
        min_length: Option<usize>,
        /// Maximum number of items.
        max_length: Option<usize>,
    },
    /// A nested object (JSON bodies only; cannot be given in form encoding).
    Object(Box<ObjectSchema>),
}

/// One named parameter.
#[derive(Clone, Debug)]
pub struct ParamSchema {
    /// Parameter name as it appears on the wire.
    pub name: &'static str,
    /// Type and constraints.
    pub kind: ParamKind,
    /// Whether the parameter may be omitted.
    pub optional: bool,
    /// Value filled in when omitted (makes the parameter optional).
    pub default: Option<Value>,
    /// Human readable description.
    pub description: &'static str,
}

/// The parameter object of a method.
#[derive(Clone, Debug, Default)]
pub struct ObjectSchema {
    /// Known parameters.
    pub properties: Vec<ParamSchema>,
    /// Whether unknown parameters are accepted (as strings).
    pub additional_properties: bool,
}

const MSG_ADDITIONAL: &str = "schema does not allow additional properties.";

impl ParamSchema {
    fn with_kind(name: &'static str, kind: ParamKind) -> Self {
        Self {
            name,
            kind,
            optional: false,
            default: None,
            description: "",
        }
    }

    /// A required boolean parameter.
    pub fn boolean(name: &'static str) -> Self {
        Self::with_kind(name, ParamKind::Boolean)
    }

    /// A required integer parameter.
    pub fn integer(name: &'static str) -> Self {
        Self::with_kind(
            name,
            ParamKind::Integer {
                minimum: None,
                maximum: None,
            },
        )
    }

    /// A required number parameter.
    pub fn number(name: &'static str) -> Self {
        Self::with_kind(
            name,
            ParamKind::Number {
                minimum: None,
                maximum: None,
            },
        )
    }

    /// A required string parameter.
    pub fn string(name: &'static str) -> Self {
        Self::with_kind(
            name,
            ParamKind::String {
                min_length: None,
                max_length: None,
                format: None,
            },
        )
    }

    /// A required array parameter with items of `items`.
    pub fn array(name: &'static str, items: ParamKind) -> Self {
        Self::with_kind(
            name,
            ParamKind::Array {
                items: Box::new(items),
                min_length: None,
                max_length: None,
            },
        )
    }

    /// A required nested object parameter.
    pub fn object(name: &'static str, schema: ObjectSchema) -> Self {
        Self::with_kind(name, ParamKind::Object(Box::new(schema)))
    }

    /// Marks the parameter optional.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// Sets a default value (implies optional).
    pub fn default(mut self, value: impl Into<Value>) -> Self {
        self.default = Some(value.into());
        self.optional = true;
        self
    }

    /// Sets the description.
    pub fn description(mut self, text: &'static str) -> Self {
        self.description = text;
        self
    }

    /// Sets the lower bound of an integer or number.
    pub fn minimum(mut self, min: i64) -> Self {
        match &mut self.kind {
            ParamKind::Integer { minimum, .. } => *minimum = Some(min),
            ParamKind::Number { minimum, .. } => *minimum = Some(min as f64),
            _ => {}
        }
        self
    }

    /// Sets the upper bound of an integer or number.
    pub fn maximum(mut self, max: i64) -> Self {
        match &mut self.kind {
            ParamKind::Integer { maximum, .. } => *maximum = Some(max),
            ParamKind::Number { maximum, .. } => *maximum = Some(max as f64),
            _ => {}
        }
        self
    }

    /// Sets the minimum length of a string (characters) or array (items).
    pub fn min_length(mut self, len: usize) -> Self {
        match &mut self.kind {
            ParamKind::String { min_length, .. } | ParamKind::Array { min_length, .. } => {
                *min_length = Some(len)
            }
            _ => {}
        }
        self
    }

    /// Sets the maximum length of a string (characters) or array (items).
    pub fn max_length(mut self, len: usize) -> Self {
        match &mut self.kind {
            ParamKind::String { max_length, .. } | ParamKind::Array { max_length, .. } => {
                *max_length = Some(len)
            }
            _ => {}
        }
        self
    }

    /// Sets the format restriction of a string.
    pub fn format(mut self, fmt: StringFormat) -> Self {
        if let ParamKind::String { format, .. } = &mut self.kind {
            *format = Some(fmt);
        }
        self
    }
}

/// `1/on/yes/true` and `0/off/no/false`, case-insensitive.
pub fn parse_boolean(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" | "true" => Ok(true),
        "0" | "off" | "no" | "false" => Ok(false),
        _ => Err("Unable to parse boolean option.".to_string()),
    }
}

impl ParamKind {
    /// Converts a form/query/path string into a JSON value of this type and checks it.
    pub fn parse_simple(&self, text: &str) -> Result<Value, String> {
        match self {
            ParamKind::Boolean => parse_boolean(text).map(Value::Bool),
            ParamKind::Integer { .. } => {
                let value: i64 = text
                    .parse()
                    .map_err(|e: std::num::ParseIntError| e.to_string())?;
                self.check_integer(value)?;
                Ok(Value::from(value))
            }
            ParamKind::Number { .. } => {
                let value: f64 = text
                    .parse()
                    .map_err(|e: std::num::ParseFloatError| e.to_string())?;
                self.check_number(value)?;
                Ok(Value::from(value))
            }
            ParamKind::String { .. } => {
                self.check_string(text)?;
                Ok(Value::String(text.to_string()))
            }
            ParamKind::Array { .. } | ParamKind::Object(_) => {
                Err("unable to parse complex (sub) objects.".to_string())
            }
        }
    }

    fn check_integer(&self, value: i64) -> Result<(), String> {
        if let ParamKind::Integer { minimum, maximum } = self {
            if let Some(min) = minimum.filter(|min| value < *min) {
                return Err(format!(
                    "value must have a minimum value of {min} (got {value})"
                ));
            }
            if let Some(max) = maximum.filter(|max| value > *max) {
                return Err(format!(
                    "value must have a maximum value of {max} (got {value})"
                ));
            }
        }
        Ok(())
    }

    fn check_number(&self, value: f64) -> Result<(), String> {
        if let ParamKind::Number { minimum, maximum } = self {
            if let Some(min) = minimum.filter(|min| value < *min) {
                return Err(format!(
                    "value must have a minimum value of {min} (got {value})"
                ));
            }
            if let Some(max) = maximum.filter(|max| value > *max) {
                return Err(format!(
                    "value must have a maximum value of {max} (got {value})"
                ));
            }
        }
        Ok(())
    }

    fn check_string(&self, value: &str) -> Result<(), String> {
        let ParamKind::String {
            min_length,
            max_length,
            format,
        } = self
        else {
            return Ok(());
        };
        let chars = value.chars().count();
        if let Some(min) = min_length.filter(|min| chars < *min) {
            return Err(format!("value must be at least {min} characters long"));
        }
        if let Some(max) = max_length.filter(|max| chars > *max) {
            return Err(format!("value may only be {max} characters long"));
        }
        match format {
            None => Ok(()),
            Some(StringFormat::Enum(list)) => {
                if list.contains(&value) {
                    Ok(())
                } else {
                    Err(format!(
                        "value '{value}' is not defined in the enumeration."
                    ))
                }
            }
            Some(StringFormat::Pattern(matches)) => {
                if matches(value) {
                    Ok(())
                } else {
                    Err("value does not match the regex pattern".to_string())
                }
            }
            Some(StringFormat::Verify(check)) => check(value),
        }
    }

    fn check_array_length(&self, len: usize) -> Result<(), String> {
        if let ParamKind::Array {
            min_length,
            max_length,
            ..
        } = self
        {
            if let Some(min) = min_length.filter(|min| len < *min) {
                return Err(format!("array must contain at least {min} elements"));
            }
            if let Some(max) = max_length.filter(|max| len > *max) {
                return Err(format!("array may only contain {max} elements"));
            }
        }
        Ok(())
    }

    /// Verifies a JSON value against this type, recording failures under `path`.
    pub fn verify_json(&self, value: &Value, path: &str, errors: &mut ParameterError) {
        let result = match self {
            ParamKind::Boolean => match value {
                Value::Bool(_) => Ok(()),
                _ => Err("Expected boolean value.".to_string()),
            },
            ParamKind::Integer { .. } => match value.as_i64() {
                Some(v) => self.check_integer(v),
                None => Err("Expected integer value.".to_string()),
            },
            ParamKind::Number { .. } => match value.as_f64() {
                Some(v) => self.check_number(v),
                None => Err("Expected number value.".to_string()),
            },
            ParamKind::String { .. } => match value.as_str() {
                Some(v) => self.check_string(v),
                None => Err("Expected string value.".to_string()),
            },
            ParamKind::Array { items, .. } => match value {
                Value::Array(list) => {
                    if let Err(err) = self.check_array_length(list.len()) {
                        Err(err)
                    } else {
                        for (index, item) in list.iter().enumerate() {
                            items.verify_json(item, &format!("{path}/[{index}]"), errors);
                        }
                        Ok(())
                    }
                }
                Value::Object(_) => Err("Expected array - got object.".to_string()),
                _ => Err("Expected array - got scalar value.".to_string()),
            },
            ParamKind::Object(schema) => match value {
                Value::Object(map) => {
                    schema.verify_map(map, &format!("{path}/"), errors);
                    Ok(())
                }
                Value::Array(_) => Err("Expected object - got array.".to_string()),
                _ => Err("Expected object - got scalar value.".to_string()),
            },
        };
        if let Err(msg) = result {
            errors.push(path, msg);
        }
    }
}

impl ObjectSchema {
    /// An object without properties that rejects unknown ones.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a property.
    pub fn param(mut self, param: ParamSchema) -> Self {
        self.properties.push(param);
        self
    }

    /// Accepts unknown parameters (kept as strings).
    pub fn allow_additional(mut self) -> Self {
        self.additional_properties = true;
        self
    }

    /// Looks up a property by name.
    pub fn lookup(&self, name: &str) -> Option<&ParamSchema> {
        self.properties.iter().find(|p| p.name == name)
    }

    /// Builds the parameter object from string pairs (form body, query string, path captures
    /// in this order), converting each value by its declared type.
    pub fn parse_strings(&self, pairs: &[(String, String)]) -> Result<Value, ParameterError> {
        let mut params = Map::new();
        let mut errors = ParameterError::new();
        for (key, text) in pairs {
            match self.lookup(key) {
                Some(prop) => match &prop.kind {
                    ParamKind::Array { items, .. } => {
                        let entry = params
                            .entry(key.clone())
                            .or_insert_with(|| Value::Array(Vec::new()));
                        if let Value::Array(list) = entry {
                            match items.parse_simple(text) {
                                Ok(value) => list.push(value),
                                Err(err) => errors.push(key.clone(), err),
                            }
                            if let Err(err) = prop.kind.check_array_length(list.len()) {
                                errors.push(key.clone(), err);
                            }
                        }
                    }
                    kind => match kind.parse_simple(text) {
                        Ok(value) => {
                            if params.contains_key(key) {
                                errors.push(key.clone(), "duplicate parameter.");
                            } else {
                                params.insert(key.clone(), value);
                            }
                        }
                        Err(err) => errors.push(key.clone(), err),
                    },
                },
                None if self.additional_properties => match params.get_mut(key) {
                    Some(Value::Array(list)) => list.push(Value::String(text.clone())),
                    Some(existing) => {
                        let first = existing.take();
                        *existing = Value::Array(vec![first, Value::String(text.clone())]);
                    }
                    None => {
                        params.insert(key.clone(), Value::String(text.clone()));
                    }
                },
                None => errors.push(key.clone(), MSG_ADDITIONAL),
            }
        }
        // Missing parameters are only reported when everything given was fine.
        if errors.is_empty() {
            for prop in &self.properties {
                if !prop.optional && !params.contains_key(prop.name) {
                    errors.push(prop.name, "parameter is missing and it is not optional.");
                }
            }
        }
        errors.into_result()?;
        Ok(Value::Object(params))
    }

    /// Verifies a JSON parameter object.
    pub fn verify_json(&self, value: &Value) -> Result<(), crate::HttpError> {
        match value {
            Value::Object(map) => {
                let mut errors = ParameterError::new();
                self.verify_map(map, "", &mut errors);
                errors.into_result()?;
                Ok(())
            }
            Value::Array(_) => Err(crate::HttpError::bad_request(
                "Expected object - got array.",
            )),
            _ => Err(crate::HttpError::bad_request(
                "Expected object - got scalar value.",
            )),
        }
    }

    fn verify_map(&self, map: &Map<String, Value>, prefix: &str, errors: &mut ParameterError) {
        for (key, value) in map {
            let path = format!("{prefix}{key}");
            match self.lookup(key) {
                Some(prop) => prop.kind.verify_json(value, &path, errors),
                None if self.additional_properties => {}
                None => errors.push(path, MSG_ADDITIONAL),
            }
        }
        for prop in &self.properties {
            if !prop.optional && map.get(prop.name).is_none_or(Value::is_null) {
                errors.push(
                    format!("{prefix}{}", prop.name),
                    "property is missing and it is not optional.",
                );
            }
        }
    }

    /// Fills in declared defaults for parameters that were not given.
    pub fn apply_defaults(&self, params: &mut Value) {
        if let Value::Object(map) = params {
            for prop in &self.properties {
                if let Some(default) = &prop.default {
                    map.entry(prop.name.to_string())
                        .or_insert_with(|| default.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn schema() -> ObjectSchema {
        ObjectSchema::new()
            .param(
                ParamSchema::string("store")
                    .min_length(3)
                    .max_length(32)
                    .format(StringFormat::Pattern(|s| {
                        s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    })),
            )
            .param(ParamSchema::integer("backup-time").minimum(1).optional())
            .param(ParamSchema::boolean("debug").default(false))
            .param(
                ParamSchema::array(
                    "tags",
                    ParamKind::String {
                        min_length: None,
                        max_length: Some(3),
                        format: None,
                    },
                )
                .optional(),
            )
            .param(
                ParamSchema::string("kind")
                    .format(StringFormat::Enum(&["vm", "ct", "host"]))
                    .optional(),
            )
    }

    #[test]
    fn form_values_are_converted_by_type() {
        let value = schema()
            .parse_strings(&pairs(&[
                ("store", "store1"),
                ("backup-time", "1717600000"),
                ("debug", "YES"),
                ("tags", "a"),
                ("tags", "b"),
            ]))
            .unwrap();
        assert_eq!(
            value,
            json!({"store":"store1","backup-time":1717600000,"debug":true,"tags":["a","b"]})
        );
    }

    #[test]
    fn form_errors_use_reference_texts() {
        let err = schema()
            .parse_strings(&pairs(&[("store", "store1"), ("backup-time", "0")]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "parameter verification failed - 'backup-time': value must have a minimum value of 1 (got 0)"
        );
        let err = schema()
            .parse_strings(&pairs(&[
                ("store", "a-b"),
                ("bogus", "1"),
                ("debug", "maybe"),
            ]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "parameter verification failed:\n\
             - 'store': value does not match the regex pattern\n\
             - 'bogus': schema does not allow additional properties.\n\
             - 'debug': Unable to parse boolean option."
        );
        let err = schema().parse_strings(&pairs(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "parameter verification failed - 'store': parameter is missing and it is not optional."
        );
        let err = schema()
            .parse_strings(&pairs(&[("store", "st"), ("kind", "lxc")]))
            .unwrap_err();
        assert_eq!(
            err.entries(),
            &[
                (
                    "store".into(),
                    "value must be at least 3 characters long".into()
                ),
                (
                    "kind".into(),
                    "value 'lxc' is not defined in the enumeration.".into()
                ),
            ]
        );
        let err = schema()
            .parse_strings(&pairs(&[
                ("store", "abc"),
                ("store", "abc"),
                ("backup-time", "x"),
            ]))
            .unwrap_err();
        assert_eq!(
            err.entries(),
            &[
                ("store".into(), "duplicate parameter.".into()),
                ("backup-time".into(), "invalid digit found in string".into()),
            ]
        );
    }

    #[test]
    fn string_length_counts_characters() {
        let kind = ParamKind::String {
            min_length: None,
            max_length: Some(3),
            format: None,
        };
        assert!(kind.parse_simple("äöü").is_ok());
        assert_eq!(
            kind.parse_simple("äöüx").unwrap_err(),
            "value may only be 3 characters long"
        );
    }

    #[test]
    fn json_objects_need_native_types() {
        let s = schema();
        assert!(s
            .verify_json(&json!({"store":"abc","backup-time":5}))
            .is_ok());
        let err = s
            .verify_json(&json!({"store":"abc","backup-time":"5","tags":["x","toolong"]}))
            .unwrap_err();
        assert_eq!(
            err.message,
            "parameter verification failed:\n\
             - 'backup-time': Expected integer value.\n\
             - 'tags/[1]': value may only be 3 characters long"
        );
        let err = s.verify_json(&json!({"debug":true})).unwrap_err();
        assert_eq!(
            err.message,
            "parameter verification failed - 'store': property is missing and it is not optional."
        );
        assert_eq!(
            s.verify_json(&json!([1])).unwrap_err().message,
            "Expected object - got array."
        );
    }

    #[test]
    fn defaults_fill_missing_values_only() {
        let mut value = json!({"store":"abc"});
        schema().apply_defaults(&mut value);
        assert_eq!(value, json!({"store":"abc","debug":false}));
        let mut value = json!({"store":"abc","debug":true});
        schema().apply_defaults(&mut value);
        assert_eq!(value["debug"], json!(true));
    }

    #[test]
    fn additional_properties_are_kept_as_strings() {
        let s = ObjectSchema::new().allow_additional();
        let value = s
            .parse_strings(&pairs(&[("x", "1"), ("x", "2"), ("y", "z")]))
            .unwrap();
        assert_eq!(value, json!({"x":["1","2"],"y":"z"}));
    }
}
