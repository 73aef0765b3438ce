//! Printing command results: JSON, pretty JSON, or text tables with box borders.
//!
//! Text mode shows an object as a `Name`/`Value` table (one row per configured column,
//! absent properties skipped) and a list as one row per item, sorted by the sort keys or
//! the first column (numerically when the column holds numbers).

mod render;
mod table;

use std::cmp::Ordering;

use anyhow::Result;
use serde_json::Value;

use crate::OutputFormat;

pub use render::{
    format_bytes_binary, format_time_span, render_bool_default_true, render_bytes, render_duration,
    render_epoch, render_expire, render_task_status, RenderFn,
};
pub use table::{display_width, draw, Cell, Column, Layout};

/// Env var: any value removes borders and headers.
pub const ENV_NO_BORDER: &str = "PROXMOX_OUTPUT_NO_BORDER";
/// Env var: any value removes the header row.
pub const ENV_NO_HEADER: &str = "PROXMOX_OUTPUT_NO_HEADER";

/// How one column (or one row of an object table) is shown.
#[derive(Clone, Debug)]
pub struct ColumnConfig {
    /// Property name in the data.
    pub name: String,
    /// Header text (defaults to the name).
    pub header: String,
    /// Cell renderer; without one, values print as plain text (booleans as `1`/`0`).
    pub renderer: Option<RenderFn>,
    /// Alignment; without a choice, columns holding numbers or booleans align right.
    pub right_align: Option<bool>,
}

impl ColumnConfig {
    /// A column showing property `name` under the header `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            header: name.to_string(),
            renderer: None,
            right_align: None,
        }
    }

    /// Sets the header text.
    pub fn header(mut self, header: &str) -> Self {
        self.header = header.to_string();
        self
    }

    /// Sets the renderer.
    pub fn renderer(mut self, renderer: RenderFn) -> Self {
        self.renderer = Some(renderer);
        self
    }

    /// Sets the alignment.
    pub fn right_align(mut self, right: bool) -> Self {
        self.right_align = Some(right);
        self
    }
}

/// Table settings of one command.
#[derive(Clone, Debug, Default)]
pub struct TableOptions {
    /// Columns in display order; empty means all properties, sorted by name.
    pub columns: Vec<ColumnConfig>,
    /// Sort keys `(property, descending)`; empty means the first column ascending.
    pub sortkeys: Vec<(String, bool)>,
    /// Keep the rows in the order of the data.
    pub unsorted: bool,
    /// No borders (and no header).
    pub noborder: bool,
    /// No header row.
    pub noheader: bool,
    /// Cut lines to this many characters (set from the terminal width).
    pub max_line_chars: Option<usize>,
}

impl TableOptions {
    /// Defaults from the environment (`PROXMOX_OUTPUT_NO_BORDER`/`_NO_HEADER`) and, when
    /// stdout is a terminal, its width.
    pub fn new() -> Self {
        Self {
            noborder: std::env::var_os(ENV_NO_BORDER).is_some(),
            noheader: std::env::var_os(ENV_NO_HEADER).is_some(),
            max_line_chars: terminal_width(),
            ..Default::default()
        }
    }

    /// Adds a column.
    pub fn column(mut self, column: ColumnConfig) -> Self {
        self.columns.push(column);
        self
    }

    /// Adds a sort key.
    pub fn sortby(mut self, name: &str, descending: bool) -> Self {
        self.sortkeys.push((name.to_string(), descending));
        self
    }

    /// Keeps the data order.
    pub fn disable_sort(mut self) -> Self {
        self.unsorted = true;
        self
    }

    /// Switches borders off (or on).
    pub fn noborder(mut self, noborder: bool) -> Self {
        self.noborder = noborder;
        self
    }

    /// Switches the header row off (or on).
    pub fn noheader(mut self, noheader: bool) -> Self {
        self.noheader = noheader;
        self
    }

    fn layout(&self) -> Layout {
        Layout {
            noborder: self.noborder,
            noheader: self.noheader,
            max_line_chars: self.max_line_chars,
        }
    }
}

fn terminal_width() -> Option<usize> {
    // SAFETY: isatty and ioctl(TIOCGWINSZ) only read/write the provided winsize struct.
    unsafe {
        if libc::isatty(libc::STDOUT_FILENO) != 1 {
            return None;
        }
        let mut size: libc::winsize = std::mem::zeroed();
        if libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) != 0 || size.ws_col == 0 {
            return None;
        }
        Some(size.ws_col as usize)
    }
}

/// Prints `value` in `format`; text mode draws tables as configured by `options`.
pub fn format_and_print_result(
    value: &Value,
    format: OutputFormat,
    options: &TableOptions,
) -> Result<()> {
    print!("{}", format_result(value, format, options)?);
    Ok(())
}

/// What [`format_and_print_result`] prints: one line of JSON, pretty JSON plus newline, or
/// the text rendering.
pub fn format_result(
    value: &Value,
    format: OutputFormat,
    options: &TableOptions,
) -> Result<String> {
    Ok(match format {
        OutputFormat::Json => format!("{}\n", serde_json::to_string(value)?),
        OutputFormat::JsonPretty => format!("{}\n", serde_json::to_string_pretty(value)?),
        OutputFormat::Text => render_text(value, options)?,
    })
}

/// The text-mode rendering of a result.
pub fn render_text(value: &Value, options: &TableOptions) -> Result<String> {
    match value {
        Value::Null => Ok(String::new()),
        Value::Object(_) => render_object(value, options),
        Value::Array(list) => render_list(list, options),
        Value::String(s) => Ok(format!("{s}\n")),
        other => Ok(format!("{other}\n")),
    }
}

fn plain_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) => f.to_string(),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn cell_text(column: &ColumnConfig, value: &Value, record: &Value) -> Result<String> {
    match column.renderer {
        Some(render) => render(value, record).map_err(|err| {
            anyhow::format_err!("unable to format property {} - {err}", column.name)
        }),
        None => Ok(plain_text(value)),
    }
}

fn is_numeric(value: &Value) -> bool {
    matches!(value, Value::Number(_) | Value::Bool(_))
}

/// The configured columns, or every property name (sorted) when none are configured.
fn effective_columns<'a>(
    options: &TableOptions,
    items: impl Iterator<Item = &'a Value>,
) -> Vec<ColumnConfig> {
    if !options.columns.is_empty() {
        return options.columns.clone();
    }
    let mut names = std::collections::BTreeSet::new();
    for item in items {
        if let Value::Object(map) = item {
            names.extend(map.keys().cloned());
        }
    }
    names.iter().map(|n| ColumnConfig::new(n)).collect()
}

fn render_object(data: &Value, options: &TableOptions) -> Result<String> {
    let columns = effective_columns(options, std::iter::once(data));
    let mut names = Vec::new();
    let mut values = Vec::new();
    let mut all_right = true;
    for column in &columns {
        let value = &data[&column.name];
        if !column.right_align.unwrap_or_else(|| is_numeric(value)) {
            all_right = false;
        }
        if value.is_null() && data.get(&column.name).is_none() {
            continue;
        }
        names.push(Cell::new(&column.header));
        values.push(Cell::new(&cell_text(column, value, data)?));
    }
    let table = [
        Column {
            header: "Name".into(),
            cells: names,
            right_align: false,
        },
        Column {
            header: "Value".into(),
            cells: values,
            right_align: all_right,
        },
    ];
    Ok(draw(&table, options.layout()))
}

fn compare_numeric(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or_else(|| {
            if a.is_nan() {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }),
    }
}

fn sort_rows(rows: &mut [&Value], keys: &[(String, bool)]) {
    let numeric: Vec<bool> = keys
        .iter()
        .map(|(key, _)| rows.iter().any(|row| row[key].is_number()))
        .collect();
    rows.sort_by(|a, b| {
        for ((key, descending), numeric) in keys.iter().zip(&numeric) {
            let (a, b) = if *descending { (b, a) } else { (a, b) };
            let order = if *numeric {
                compare_numeric(a[key].as_f64(), b[key].as_f64())
            } else {
                a[key].as_str().cmp(&b[key].as_str())
            };
            if order != Ordering::Equal {
                return order;
            }
        }
        Ordering::Equal
    });
}

fn render_list(list: &[Value], options: &TableOptions) -> Result<String> {
    let columns = effective_columns(options, list.iter());
    let Some(first) = columns.first() else {
        return Ok(String::new());
    };
    let mut rows: Vec<&Value> = list.iter().collect();
    if !options.unsorted {
        let keys = if options.sortkeys.is_empty() {
            vec![(first.name.clone(), false)]
        } else {
            options.sortkeys.clone()
        };
        sort_rows(&mut rows, &keys);
    }
    let mut table = Vec::with_capacity(columns.len());
    for column in &columns {
        let right_align = column.right_align.unwrap_or_else(|| {
            let mut values = rows.iter().map(|row| &row[&column.name]);
            values.clone().any(is_numeric) && values.all(|v| v.is_null() || is_numeric(v))
        });
        let cells = rows
            .iter()
            .map(|row| cell_text(column, &row[&column.name], row).map(|t| Cell::new(&t)))
            .collect::<Result<Vec<_>>>()?;
        table.push(Column {
            header: column.header.clone(),
            cells,
            right_align,
        });
    }
    Ok(draw(&table, options.layout()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plain() -> TableOptions {
        TableOptions::default()
    }

    /// The benchmark result table of the client (Name/Value table of an object).
    #[test]
    fn benchmark_table() {
        let rows = [
            (
                "tls",
                "TLS (maximal backup upload speed)",
                "1267.41 MB/s (103%)",
            ),
            (
                "sha256",
                "SHA256 checksum computation speed",
                "2066.73 MB/s (102%)",
            ),
            (
                "compress",
                "ZStd level 1 compression speed",
                "775.11 MB/s (103%)",
            ),
            (
                "decompress",
                "ZStd level 1 decompression speed",
                "1233.35 MB/s (103%)",
            ),
            ("verify", "Chunk verification speed", "783.43 MB/s (103%)"),
            (
                "aes256_gcm",
                "AES256 GCM encryption speed",
                "3688.27 MB/s (101%)",
            ),
        ];
        let mut data = serde_json::Map::new();
        let mut options = plain();
        for (key, header, value) in rows {
            data.insert(key.to_string(), json!(value));
            options = options.column(ColumnConfig::new(key).header(header));
        }
        let expected = "\
┌───────────────────────────────────┬─────────────────────┐
│ Name                              │ Value               │
╞═══════════════════════════════════╪═════════════════════╡
│ TLS (maximal backup upload speed) │ 1267.41 MB/s (103%) │
├───────────────────────────────────┼─────────────────────┤
│ SHA256 checksum computation speed │ 2066.73 MB/s (102%) │
├───────────────────────────────────┼─────────────────────┤
│ ZStd level 1 compression speed    │ 775.11 MB/s (103%)  │
├───────────────────────────────────┼─────────────────────┤
│ ZStd level 1 decompression speed  │ 1233.35 MB/s (103%) │
├───────────────────────────────────┼─────────────────────┤
│ Chunk verification speed          │ 783.43 MB/s (103%)  │
├───────────────────────────────────┼─────────────────────┤
│ AES256 GCM encryption speed       │ 3688.27 MB/s (101%) │
└───────────────────────────────────┴─────────────────────┘
";
        assert_eq!(
            render_text(&Value::Object(data), &options).unwrap(),
            expected
        );
    }

    #[test]
    fn list_sorted_by_first_column_with_alignment() {
        let data = json!([
            {"name": "store2", "path": "/b", "size": 10},
            {"name": "store1", "path": "/a", "comment": "first", "size": 9},
        ]);
        let options = plain()
            .column(ColumnConfig::new("name"))
            .column(ColumnConfig::new("path"))
            .column(ColumnConfig::new("comment"))
            .column(ColumnConfig::new("size"));
        let expected = "\
┌────────┬──────┬─────────┬──────┐
│ name   │ path │ comment │ size │
╞════════╪══════╪═════════╪══════╡
│ store1 │ /a   │ first   │    9 │
├────────┼──────┼─────────┼──────┤
│ store2 │ /b   │         │   10 │
└────────┴──────┴─────────┴──────┘
";
        assert_eq!(render_text(&data, &options).unwrap(), expected);

        let mut options = options.noborder(true);
        assert_eq!(
            render_text(&data, &options).unwrap(),
            "store1 /a first  9\nstore2 /b       10\n"
        );
        options.noborder = false;
        options.noheader = true;
        assert!(render_text(&data, &options)
            .unwrap()
            .starts_with("┌────────┬────┬───────┬────┐\n│ store1 │"));
    }

    #[test]
    fn numeric_sort_and_sort_keys() {
        let data = json!([{"n": 10, "s": "a"}, {"n": 9, "s": "b"}, {"n": 100, "s": "c"}]);
        let options = plain()
            .noborder(true)
            .column(ColumnConfig::new("n"))
            .column(ColumnConfig::new("s"));
        assert_eq!(
            render_text(&data, &options).unwrap(),
            "  9 b\n 10 a\n100 c\n"
        );
        let options = options.sortby("s", true);
        assert_eq!(
            render_text(&data, &options).unwrap(),
            "100 c\n  9 b\n 10 a\n"
        );
        let options = options.disable_sort();
        assert_eq!(
            render_text(&data, &options).unwrap(),
            " 10 a\n  9 b\n100 c\n"
        );
    }

    #[test]
    fn object_skips_absent_properties_and_uses_renderers() {
        let data = json!({"store": "s1", "removed-bytes": 1024, "upid": null, "flag": true});
        let options = plain()
            .column(ColumnConfig::new("store"))
            .column(ColumnConfig::new("missing"))
            .column(ColumnConfig::new("upid"))
            .column(ColumnConfig::new("removed-bytes").renderer(render_bytes))
            .column(ColumnConfig::new("flag"));
        let expected = "\
┌───────────────┬───────┐
│ Name          │ Value │
╞═══════════════╪═══════╡
│ store         │ s1    │
├───────────────┼───────┤
│ upid          │       │
├───────────────┼───────┤
│ removed-bytes │ 1 KiB │
├───────────────┼───────┤
│ flag          │ 1     │
└───────────────┴───────┘
";
        assert_eq!(render_text(&data, &options).unwrap(), expected);
    }

    #[test]
    fn default_columns_and_scalars() {
        let data = json!({"b": 2, "a": "x"});
        let options = plain().noborder(true);
        assert_eq!(render_text(&data, &options).unwrap(), "a x\nb 2\n");
        assert_eq!(render_text(&json!("text"), &options).unwrap(), "text\n");
        assert_eq!(render_text(&Value::Null, &options).unwrap(), "");
        assert_eq!(render_text(&json!([]), &options).unwrap(), "");
    }

    #[test]
    fn renderer_errors_name_the_property() {
        fn failing(_: &Value, _: &Value) -> Result<String> {
            anyhow::bail!("bad value")
        }
        let options = plain().column(ColumnConfig::new("x").renderer(failing));
        let err = render_text(&json!([{"x": 1}]), &options).unwrap_err();
        assert_eq!(err.to_string(), "unable to format property x - bad value");
    }

    #[test]
    fn result_forms() {
        let data = json!({"b": [1, 2], "a": "x"});
        let options = plain().column(ColumnConfig::new("a"));
        assert_eq!(
            format_result(&data, OutputFormat::Json, &options).unwrap(),
            "{\"a\":\"x\",\"b\":[1,2]}\n"
        );
        assert_eq!(
            format_result(&data, OutputFormat::JsonPretty, &options).unwrap(),
            "{\n  \"a\": \"x\",\n  \"b\": [\n    1,\n    2\n  ]\n}\n"
        );
        let options = options.noheader(true);
        assert_eq!(
            format_result(&data, OutputFormat::Text, &options).unwrap(),
            "┌───┬───┐\n│ a │ x │\n└───┴───┘\n"
        );
    }
}
