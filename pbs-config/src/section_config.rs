//! The section-config file format: typed sections of `<TAB><key> <value>` property lines.
//!
//! A [`SectionConfig`] describes the section types of one file (type name, id property, id
//! check, allowed properties with their value kinds). Parsing produces [`SectionConfigData`],
//! which keeps every section as a JSON object (the id stored under the id property) together
//! with the section order, so that writing reproduces the file byte for byte.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use thiserror::Error;

/// Validation hook for string values and section ids; the error text is the reason.
pub type StringCheck = fn(&str) -> Result<(), String>;

/// What kind of value a property holds.
#[derive(Clone, Copy, Debug)]
pub enum ValueKind {
    /// `true/false/1/0/yes/no/on/off`, stored as a JSON boolean.
    Boolean,
    /// A decimal integer within the optional bounds.
    Integer { min: Option<i64>, max: Option<i64> },
    /// A floating point number.
    Number,
    /// A string with a character-count range and an optional format check.
    String {
        min_len: usize,
        max_len: usize,
        check: Option<StringCheck>,
    },
}

impl ValueKind {
    /// A string of any length without further checks (control characters are never allowed).
    pub const ANY_STRING: ValueKind = ValueKind::String {
        min_len: 0,
        max_len: usize::MAX,
        check: None,
    };

    /// A string with a format check.
    pub const fn checked_string(check: StringCheck) -> ValueKind {
        ValueKind::String {
            min_len: 0,
            max_len: usize::MAX,
            check: Some(check),
        }
    }

    /// Parses the textual value of a property line.
    pub fn parse(&self, text: &str) -> Result<Value, String> {
        match *self {
            ValueKind::Boolean => parse_boolean(text).map(Value::Bool),
            ValueKind::Integer { .. } => {
                let n: i64 = text
                    .parse()
                    .map_err(|_| format!("value '{text}' is not an integer"))?;
                let value = Value::from(n);
                self.verify(&value)?;
                Ok(value)
            }
            ValueKind::Number => {
                let n: f64 = text
                    .parse()
                    .map_err(|_| format!("value '{text}' is not a number"))?;
                serde_json::Number::from_f64(n)
                    .map(Value::Number)
                    .ok_or_else(|| format!("value '{text}' is not a finite number"))
            }
            ValueKind::String { .. } => {
                let value = Value::String(text.to_string());
                self.verify(&value)?;
                Ok(value)
            }
        }
    }

    /// Checks that a JSON value is of this kind and within its constraints.
    pub fn verify(&self, value: &Value) -> Result<(), String> {
        match (*self, value) {
            (ValueKind::Boolean, Value::Bool(_)) => Ok(()),
            (ValueKind::Integer { min, max }, Value::Number(n)) => {
                let n = n
                    .as_i64()
                    .ok_or_else(|| format!("value '{n}' is not an integer"))?;
                if let Some(min) = min {
                    if n < min {
                        return Err(format!("value must have a minimum value of {min}"));
                    }
                }
                if let Some(max) = max {
                    if n > max {
                        return Err(format!("value must have a maximum value of {max}"));
                    }
                }
                Ok(())
            }
            (ValueKind::Number, Value::Number(_)) => Ok(()),
            (
                ValueKind::String {
                    min_len,
                    max_len,
                    check,
                },
                Value::String(s),
            ) => {
                if s.chars().any(char::is_control) {
                    return Err("value contains control characters".to_string());
                }
                let len = s.chars().count();
                if len < min_len {
                    return Err(format!("value must be at least {min_len} characters long"));
                }
                if len > max_len {
                    return Err(format!("value may only be {max_len} characters long"));
                }
                match check {
                    Some(check) => check(s),
                    None => Ok(()),
                }
            }
            (ValueKind::Boolean, _) => Err("expected boolean value".to_string()),
            (ValueKind::Integer { .. }, _) => Err("expected integer value".to_string()),
            (ValueKind::Number, _) => Err("expected number value".to_string()),
            (ValueKind::String { .. }, _) => Err("expected string value".to_string()),
        }
    }
}

/// Parses a boolean the way the schema does (case-insensitive).
pub fn parse_boolean(text: &str) -> Result<bool, String> {
    const TRUE: [&str; 4] = ["1", "on", "yes", "true"];
    const FALSE: [&str; 4] = ["0", "off", "no", "false"];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(text)) {
        Ok(true)
    } else if FALSE.iter().any(|t| t.eq_ignore_ascii_case(text)) {
        Ok(false)
    } else {
        Err(format!("unable to parse boolean '{text}'"))
    }
}

/// One allowed property of a section type.
#[derive(Clone, Copy, Debug)]
pub struct Property {
    /// Key as written in the file.
    pub name: &'static str,
    /// Kind of each value.
    pub kind: ValueKind,
    /// Whether the property may be absent.
    pub optional: bool,
    /// Whether the key may repeat (one line per array element).
    pub array: bool,
}

impl Property {
    /// An optional single-valued property.
    pub const fn optional(name: &'static str, kind: ValueKind) -> Self {
        Self {
            name,
            kind,
            optional: true,
            array: false,
        }
    }

    /// A required single-valued property.
    pub const fn required(name: &'static str, kind: ValueKind) -> Self {
        Self {
            name,
            kind,
            optional: false,
            array: false,
        }
    }

    /// An optional array property (key repeated per element).
    pub const fn array(name: &'static str, kind: ValueKind) -> Self {
        Self {
            name,
            kind,
            optional: true,
            array: true,
        }
    }
}

/// Description of one section type of a file.
#[derive(Clone, Debug)]
pub struct SectionType {
    /// Type name in the header line.
    pub name: &'static str,
    /// Property under which the section id is stored in the object.
    pub id_property: &'static str,
    /// Validation of the section id.
    pub id_check: StringCheck,
    /// Allowed properties (the id property need not be listed).
    pub properties: &'static [Property],
    /// Whether keys not listed in `properties` are kept as strings instead of rejected.
    pub additional_properties: bool,
}

impl SectionType {
    fn property(&self, key: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.name == key)
    }
}

/// The section types of one file.
#[derive(Clone, Debug)]
pub struct SectionConfig {
    types: Vec<SectionType>,
    allow_unknown_sections: bool,
}

/// A parse error: file name, 1-based line number and reason.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("parsing \"{file}\" failed: line {line} - {message}")]
pub struct ParseError {
    /// File name used in the message.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A write error: the data does not match the schema or cannot be represented.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("writing \"{file}\" failed: {message}")]
pub struct WriteError {
    /// File name used in the message.
    pub file: String,
    /// What is wrong.
    pub message: String,
}

/// Parsed sections: type and JSON object per id, plus the section order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SectionConfigData {
    sections: HashMap<String, (String, Value)>,
    order: Vec<String>,
}

impl SectionConfigData {
    /// An empty configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of sections.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether there are no sections.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Whether a section with this id exists.
    pub fn contains(&self, id: &str) -> bool {
        self.sections.contains_key(id)
    }

    /// Section ids in file order (new sections last).
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }

    /// Type name and raw object of a section.
    pub fn get(&self, id: &str) -> Option<(&str, &Value)> {
        self.sections.get(id).map(|(ty, v)| (ty.as_str(), v))
    }

    /// Sections in file order as (id, type, object).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.order.iter().filter_map(|id| {
            self.sections
                .get(id)
                .map(|(ty, v)| (id.as_str(), ty.as_str(), v))
        })
    }

    /// Sets a raw section; a new id is appended at the end, an existing one keeps its place.
    pub fn set_value(&mut self, id: &str, type_name: &str, value: Value) {
        if self
            .sections
            .insert(id.to_string(), (type_name.to_string(), value))
            .is_none()
        {
            self.order.push(id.to_string());
        }
    }

    /// Serializes `data` into a section (see [`Self::set_value`]).
    pub fn set_data<T: Serialize>(
        &mut self,
        id: &str,
        type_name: &str,
        data: &T,
    ) -> Result<(), serde_json::Error> {
        let value = serde_json::to_value(data)?;
        self.set_value(id, type_name, value);
        Ok(())
    }

    /// Removes a section, returning its type and object.
    pub fn remove(&mut self, id: &str) -> Option<(String, Value)> {
        let removed = self.sections.remove(id)?;
        self.order.retain(|o| o != id);
        Some(removed)
    }

    /// Deserializes the section `id`, which must be of type `type_name`.
    pub fn lookup<T: DeserializeOwned>(&self, type_name: &str, id: &str) -> anyhow::Result<T> {
        match self.sections.get(id) {
            Some((ty, value)) if ty == type_name => serde_json::from_value(value.clone())
                .map_err(|err| anyhow::format_err!("section '{id}': {err}")),
            Some((ty, _)) => anyhow::bail!("section '{id}' has type '{ty}', not '{type_name}'"),
            None => anyhow::bail!("no such {type_name} '{id}'"),
        }
    }

    /// Deserializes all sections of one type, in file order.
    pub fn convert_to_typed_array<T: DeserializeOwned>(
        &self,
        type_name: &str,
    ) -> anyhow::Result<Vec<T>> {
        self.iter()
            .filter(|(_, ty, _)| *ty == type_name)
            .map(|(id, _, value)| {
                serde_json::from_value(value.clone())
                    .map_err(|err| anyhow::format_err!("section '{id}': {err}"))
            })
            .collect()
    }
}

fn has_control_chars(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// `<type>: <id>`: starts with a letter, split at the first `:`, both parts trimmed.
fn parse_header(line: &str) -> Option<(&str, &str)> {
    if !line.starts_with(|c: char| c.is_alphabetic()) {
        return None;
    }
    let (ty, id) = line.split_once(':')?;
    let ty = ty.trim();
    if ty.is_empty() {
        return None;
    }
    Some((ty, id.trim()))
}

/// `<ws><key><ws><value>`: key up to the first whitespace, value trimmed (may be empty).
fn parse_property_line(line: &str) -> Option<(&str, &str)> {
    if !line.starts_with(|c: char| c.is_whitespace()) {
        return None;
    }
    let rest = line.trim_start();
    let split = rest.find(char::is_whitespace)?;
    let key = &rest[..split];
    if key.is_empty() {
        return None;
    }
    Some((key, rest[split..].trim()))
}

struct OpenSection<'a> {
    ty: Option<&'a SectionType>,
    type_name: String,
    id: String,
    object: Map<String, Value>,
}

impl SectionConfig {
    /// A file with the given section types; unknown section types are errors.
    pub fn new(types: Vec<SectionType>) -> Self {
        Self {
            types,
            allow_unknown_sections: false,
        }
    }

    /// Keeps sections of unknown types (all values as strings) instead of rejecting them.
    pub fn allow_unknown_sections(mut self, allow: bool) -> Self {
        self.allow_unknown_sections = allow;
        self
    }

    /// The description of a section type.
    pub fn section_type(&self, name: &str) -> Option<&SectionType> {
        self.types.iter().find(|t| t.name == name)
    }

    /// Parses the file content; `file` only names the file in error messages.
    pub fn parse(&self, file: &str, content: &str) -> Result<SectionConfigData, ParseError> {
        let mut data = SectionConfigData::new();
        let mut current: Option<OpenSection> = None;
        let mut line_no = 0;
        let error = |line: usize, message: String| ParseError {
            file: file.to_string(),
            line,
            message,
        };

        for line in content.lines() {
            line_no += 1;
            if line.trim().is_empty() {
                if let Some(section) = current.take() {
                    self.finish_section(&mut data, section)
                        .map_err(|msg| error(line_no, msg))?;
                }
                continue;
            }
            match current.as_mut() {
                None => {
                    let (type_name, id) = parse_header(line)
                        .ok_or_else(|| error(line_no, "syntax error (expected header)".into()))?;
                    let ty = self.section_type(type_name);
                    match ty {
                        Some(ty) => (ty.id_check)(id).map_err(|err| {
                            error(
                                line_no,
                                format!("syntax error in section identifier: {err}"),
                            )
                        })?,
                        None if self.allow_unknown_sections => {
                            if id.is_empty() || has_control_chars(id) {
                                return Err(error(
                                    line_no,
                                    "syntax error in section identifier: invalid id".into(),
                                ));
                            }
                        }
                        None => {
                            return Err(error(
                                line_no,
                                format!("unknown section type '{type_name}'"),
                            ))
                        }
                    }
                    current = Some(OpenSection {
                        ty,
                        type_name: type_name.to_string(),
                        id: id.to_string(),
                        object: Map::new(),
                    });
                }
                Some(section) => {
                    let (key, text) = parse_property_line(line).ok_or_else(|| {
                        error(line_no, "syntax error (expected section properties)".into())
                    })?;
                    add_property(section, key, text).map_err(|msg| error(line_no, msg))?;
                }
            }
        }
        if let Some(section) = current.take() {
            self.finish_section(&mut data, section)
                .map_err(|msg| error(line_no, msg))?;
        }
        Ok(data)
    }

    fn finish_section(
        &self,
        data: &mut SectionConfigData,
        mut section: OpenSection,
    ) -> Result<(), String> {
        if data.contains(&section.id) {
            return Err(format!("duplicate section id '{}'", section.id));
        }
        if let Some(ty) = section.ty {
            for prop in ty.properties {
                if !prop.optional
                    && prop.name != ty.id_property
                    && !section.object.contains_key(prop.name)
                {
                    return Err(format!(
                        "property '{}' is missing and it is not optional.",
                        prop.name
                    ));
                }
            }
            section.object.insert(
                ty.id_property.to_string(),
                Value::String(section.id.clone()),
            );
        }
        data.set_value(
            &section.id,
            &section.type_name,
            Value::Object(section.object),
        );
        Ok(())
    }

    /// Checks one section against its type's schema.
    fn verify_section(&self, id: &str, type_name: &str, value: &Value) -> Result<(), String> {
        let object = value
            .as_object()
            .ok_or_else(|| "section data is not an object".to_string())?;
        if id.is_empty() || has_control_chars(id) {
            return Err("invalid section id".to_string());
        }
        let Some(ty) = self.section_type(type_name) else {
            if self.allow_unknown_sections {
                return Ok(());
            }
            return Err(format!("unknown section type '{type_name}'"));
        };
        (ty.id_check)(id)?;
        for (key, value) in object {
            if key == ty.id_property {
                continue;
            }
            match ty.property(key) {
                Some(prop) => match value {
                    Value::Null => {}
                    Value::Array(items) if prop.array => {
                        for item in items {
                            prop.kind
                                .verify(item)
                                .map_err(|err| format!("property '{key}': {err}"))?;
                        }
                    }
                    value => prop
                        .kind
                        .verify(value)
                        .map_err(|err| format!("property '{key}': {err}"))?,
                },
                None if ty.additional_properties => {}
                None => return Err(format!("unknown property '{key}'")),
            }
        }
        for prop in ty.properties {
            let present = object.get(prop.name).is_some_and(|v| !v.is_null());
            if !prop.optional && prop.name != ty.id_property && !present {
                return Err(format!(
                    "property '{}' is missing and it is not optional.",
                    prop.name
                ));
            }
        }
        Ok(())
    }

    /// Writes the sections in order; `file` only names the file in error messages.
    pub fn write(&self, file: &str, data: &SectionConfigData) -> Result<String, WriteError> {
        let error = |message: String| WriteError {
            file: file.to_string(),
            message,
        };
        let mut out = String::new();
        for (id, type_name, value) in data.iter() {
            self.verify_section(id, type_name, value)
                .map_err(|err| error(format!("verify section '{id}' failed - {err}")))?;
            let id_property = self.section_type(type_name).map(|t| t.id_property);
            if !out.is_empty() {
                out.push('\n');
            }
            let _ = writeln!(out, "{type_name}: {id}");
            let Some(object) = value.as_object() else {
                continue;
            };
            // Sorted explicitly: the map's own order depends on serde_json features.
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            for key in keys {
                if Some(key.as_str()) == id_property {
                    continue;
                }
                let unsupported = || {
                    error(format!(
                        "got unsupported type in section '{id}' key '{key}'"
                    ))
                };
                match &object[key] {
                    Value::Null => {}
                    Value::Array(items) => {
                        for item in items {
                            let text = scalar_text(item).ok_or_else(unsupported)?;
                            write_property(&mut out, key, &text).map_err(&error)?;
                        }
                    }
                    value => {
                        let text = scalar_text(value).ok_or_else(unsupported)?;
                        write_property(&mut out, key, &text).map_err(&error)?;
                    }
                }
            }
        }
        Ok(out)
    }
}

fn write_property(out: &mut String, key: &str, text: &str) -> Result<(), String> {
    if has_control_chars(text) {
        return Err(format!(
            "value of property '{key}' contains control characters"
        ));
    }
    let _ = writeln!(out, "\t{key} {text}");
    Ok(())
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn add_property(section: &mut OpenSection, key: &str, text: &str) -> Result<(), String> {
    let Some(ty) = section.ty else {
        return insert_single(&mut section.object, key, Value::String(text.to_string()));
    };
    match ty.property(key) {
        Some(prop) => {
            let value = prop
                .kind
                .parse(text)
                .map_err(|err| format!("property '{key}': {err}"))?;
            if prop.array {
                match section
                    .object
                    .entry(key.to_string())
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    Value::Array(items) => items.push(value),
                    _ => return Err(format!("duplicate property '{key}'")),
                }
                Ok(())
            } else {
                insert_single(&mut section.object, key, value)
            }
        }
        None if ty.additional_properties => {
            insert_single(&mut section.object, key, Value::String(text.to_string()))
        }
        None => Err(format!("unknown property '{key}'")),
    }
}

fn insert_single(object: &mut Map<String, Value>, key: &str, value: Value) -> Result<(), String> {
    if object.contains_key(key) {
        return Err(format!("duplicate property '{key}'"));
    }
    object.insert(key.to_string(), value);
    Ok(())
}

/// Id check accepting SAFE_ID strings of 3..=32 characters (datastores, remotes, jobs).
pub fn check_safe_id_3_32(id: &str) -> Result<(), String> {
    if pbs_api_types::names::is_safe_id_len(id, 3, 32) {
        Ok(())
    } else {
        Err(format!("value '{id}' does not match the regex pattern"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYNC_PROPS: &[Property] = &[
        Property::array("group-filter", ValueKind::ANY_STRING),
        Property::optional("schedule", ValueKind::ANY_STRING),
    ];

    fn any_id(id: &str) -> Result<(), String> {
        if id.is_empty() {
            Err("empty id".into())
        } else {
            Ok(())
        }
    }

    fn sync_config() -> SectionConfig {
        SectionConfig::new(vec![SectionType {
            name: "sync",
            id_property: "id",
            id_check: any_id,
            properties: SYNC_PROPS,
            additional_properties: false,
        }])
    }

    const LVM_PROPS: &[Property] = &[
        Property::required("content", ValueKind::ANY_STRING),
        Property::required("thinpool", ValueKind::ANY_STRING),
    ];

    const TEST_PROPS: &[Property] = &[
        Property::required("path", ValueKind::ANY_STRING),
        Property::optional("flag", ValueKind::Boolean),
        Property::optional(
            "count",
            ValueKind::Integer {
                min: Some(1),
                max: Some(10),
            },
        ),
        Property::optional("ratio", ValueKind::Number),
        Property::optional("comment", ValueKind::ANY_STRING),
    ];

    fn test_config() -> SectionConfig {
        SectionConfig::new(vec![
            SectionType {
                name: "lvmthin",
                id_property: "storage",
                id_check: any_id,
                properties: LVM_PROPS,
                additional_properties: false,
            },
            SectionType {
                name: "test",
                id_property: "name",
                id_check: check_safe_id_3_32,
                properties: TEST_PROPS,
                additional_properties: false,
            },
        ])
    }

    #[test]
    fn array_property_vector() {
        let input = "sync: s-5b2122f9-51f3\n        group-filter group:vm/100\n        schedule hourly\n        group-filter group:vm/102\n";
        let data = sync_config().parse("sync.cfg", input).unwrap();
        let (ty, value) = data.get("s-5b2122f9-51f3").unwrap();
        assert_eq!(ty, "sync");
        assert_eq!(
            value["group-filter"],
            serde_json::json!(["group:vm/100", "group:vm/102"])
        );
        assert_eq!(value["schedule"], "hourly");
        assert_eq!(value["id"], "s-5b2122f9-51f3");
        assert_eq!(
            sync_config().write("sync.cfg", &data).unwrap(),
            "sync: s-5b2122f9-51f3\n\tgroup-filter group:vm/100\n\tgroup-filter group:vm/102\n\tschedule hourly\n"
        );

        let dup = "sync: s-5b2122f9-51f3\n        schedule hourly\n        schedule monthly\n";
        let err = sync_config().parse("sync.cfg", dup).unwrap_err();
        assert_eq!(
            err.to_string(),
            "parsing \"sync.cfg\" failed: line 3 - duplicate property 'schedule'"
        );
    }

    #[test]
    fn all_of_round_trip() {
        let input = "lvmthin: local-lvm\n\tcontent rootdir,images\n\tthinpool data\n\nlvmthin: local-lvm2\n\tcontent rootdir,images\n\tthinpool data\n";
        let config = test_config();
        let data = config.parse("storage.cfg", input).unwrap();
        assert_eq!(config.write("storage.cfg", &data).unwrap(), input);
    }

    #[test]
    fn parse_errors_name_file_and_line() {
        let config = test_config();
        let cases: &[(&str, usize, &str)] = &[
            ("# comment\n", 1, "syntax error (expected header)"),
            (
                "test: abc\n\tpath /x\ntest: def\n",
                3,
                "syntax error (expected section properties)",
            ),
            (
                "test: abc\n\tpath\n",
                2,
                "syntax error (expected section properties)",
            ),
            (
                "\n\ntest: abc\n\tpath /x\n\tbogus 1\n",
                5,
                "unknown property 'bogus'",
            ),
            ("other: abc\n", 1, "unknown section type 'other'"),
            (
                "test: a!\n\tpath /x\n",
                1,
                "syntax error in section identifier: value 'a!' does not match the regex pattern",
            ),
            (
                "test: abc\n\tcomment x\n\n",
                3,
                "property 'path' is missing and it is not optional.",
            ),
            (
                "test: abc\n\tpath /x\n\tcount 11\n",
                3,
                "property 'count': value must have a maximum value of 10",
            ),
            (
                "test: abc\n\tpath /x\n\tflag maybe\n",
                3,
                "property 'flag': unable to parse boolean 'maybe'",
            ),
            (
                "test: abc\n\tpath /x\n\ntest: abc\n\tpath /y\n",
                5,
                "duplicate section id 'abc'",
            ),
        ];
        for (input, line, message) in cases {
            let err = config.parse("test.cfg", input).unwrap_err();
            assert_eq!(
                (err.line, err.message.as_str(), err.file.as_str()),
                (*line, *message, "test.cfg"),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn values_and_writer_format() {
        let config = test_config();
        let input = "test: abc\n  count   3  \n\tflag YES\n\tcomment \n\tratio 2\n\tpath /x y \r\n";
        let data = config.parse("test.cfg", input).unwrap();
        let (_, value) = data.get("abc").unwrap();
        assert_eq!(value["flag"], true);
        assert_eq!(value["count"], 3);
        assert_eq!(value["comment"], "");
        assert_eq!(value["path"], "/x y");
        assert_eq!(
            config.write("test.cfg", &data).unwrap(),
            "test: abc\n\tcomment \n\tcount 3\n\tflag true\n\tpath /x y\n\tratio 2.0\n"
        );
    }

    #[test]
    fn order_preserved_and_new_sections_appended() {
        let config = test_config();
        let input = "test: zzz\n\tpath /z\n\ntest: aaa\n\tpath /a\n";
        let mut data = config.parse("test.cfg", input).unwrap();
        data.set_value(
            "mmm",
            "test",
            serde_json::json!({"name": "mmm", "path": "/m", "comment": null}),
        );
        data.set_value("zzz", "test", serde_json::json!({"path": "/z2"}));
        assert_eq!(
            config.write("test.cfg", &data).unwrap(),
            "test: zzz\n\tpath /z2\n\ntest: aaa\n\tpath /a\n\ntest: mmm\n\tpath /m\n"
        );
        data.remove("zzz");
        assert_eq!(data.ids().collect::<Vec<_>>(), vec!["aaa", "mmm"]);
        assert_eq!(
            config.write("test.cfg", &SectionConfigData::new()).unwrap(),
            ""
        );
    }

    #[test]
    fn writer_rejects_invalid_data() {
        let config = test_config();
        let mut data = SectionConfigData::new();
        data.set_value("abc", "test", serde_json::json!({"path": "/x\n"}));
        assert_eq!(
            config.write("test.cfg", &data).unwrap_err().to_string(),
            "writing \"test.cfg\" failed: verify section 'abc' failed - property 'path': value contains control characters"
        );
        data.set_value("abc", "test", serde_json::json!({"comment": "c"}));
        assert!(config
            .write("test.cfg", &data)
            .unwrap_err()
            .message
            .ends_with("property 'path' is missing and it is not optional."));
        data.set_value("abc", "test", serde_json::json!({"path": "/x", "bogus": 1}));
        assert!(config
            .write("test.cfg", &data)
            .unwrap_err()
            .message
            .ends_with("unknown property 'bogus'"));

        let open = SectionConfig::new(vec![SectionType {
            name: "test",
            id_property: "name",
            id_check: any_id,
            properties: &[],
            additional_properties: true,
        }]);
        data.set_value("abc", "test", serde_json::json!({"nested": {"a": 1}}));
        assert_eq!(
            open.write("test.cfg", &data).unwrap_err().message,
            "got unsupported type in section 'abc' key 'nested'"
        );
    }

    #[test]
    fn typed_access() {
        #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
        struct Test {
            name: String,
            path: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            count: Option<u32>,
        }
        let config = test_config();
        let data = config
            .parse("test.cfg", "test: abc\n\tpath /x\n\tcount 2\n")
            .unwrap();
        let t: Test = data.lookup("test", "abc").unwrap();
        assert_eq!(
            t,
            Test {
                name: "abc".into(),
                path: "/x".into(),
                count: Some(2)
            }
        );
        assert!(data.lookup::<Test>("lvmthin", "abc").is_err());
        assert!(data.lookup::<Test>("test", "nope").is_err());
        let mut data2 = SectionConfigData::new();
        data2.set_data("abc", "test", &t).unwrap();
        assert_eq!(
            config.write("t", &data2).unwrap(),
            "test: abc\n\tcount 2\n\tpath /x\n"
        );
        let all: Vec<Test> = data.convert_to_typed_array("test").unwrap();
        assert_eq!(all.len(), 1);
    }

    #[test]
    fn unknown_sections_kept_when_allowed() {
        let config = test_config().allow_unknown_sections(true);
        let input = "future: x1\n\tkey value\n";
        let data = config.parse("t", input).unwrap();
        assert_eq!(config.write("t", &data).unwrap(), input);
    }
}
