//! Drawing text tables with box borders.

/// Display width of a string in terminal cells (wide East Asian characters count twice,
/// combining marks and zero-width characters not at all).
pub fn display_width(text: &str) -> usize {
    text.chars().map(char_width).sum()
}

fn char_width(c: char) -> usize {
    let cp = c as u32;
    match cp {
        0x0300..=0x036F | 0x200B..=0x200F | 0x20D0..=0x20FF | 0xFE00..=0xFE0F => 0,
        0x1100..=0x115F
        | 0x2E80..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x1F300..=0x1F64F
        | 0x1F900..=0x1F9FF
        | 0x20000..=0x3FFFD => 2,
        _ => 1,
    }
}

/// One rendered cell: its text split into lines.
#[derive(Clone, Debug, Default)]
pub struct Cell {
    pub lines: Vec<String>,
}

impl Cell {
    /// Splits `text` into lines (an empty text has no lines at all).
    pub fn new(text: &str) -> Self {
        Self {
            lines: text.lines().map(str::to_string).collect(),
        }
    }

    fn width(&self) -> usize {
        self.lines
            .iter()
            .map(|l| display_width(l))
            .max()
            .unwrap_or(0)
    }
}

/// One column of a table ready for drawing.
#[derive(Clone, Debug)]
pub struct Column {
    pub header: String,
    pub cells: Vec<Cell>,
    pub right_align: bool,
}

/// Drawing switches.
#[derive(Clone, Copy, Debug, Default)]
pub struct Layout {
    pub noborder: bool,
    pub noheader: bool,
    /// Cut every line after this many characters (terminal width).
    pub max_line_chars: Option<usize>,
}

struct Borders {
    top: String,
    head: String,
    middle: String,
    bottom: String,
}

fn border_line(widths: &[usize], left: char, fill: char, cross: char, right: char) -> String {
    let mut line = String::new();
    line.push(left);
    for (i, width) in widths.iter().enumerate() {
        if i > 0 {
            line.push(cross);
        }
        line.extend(std::iter::repeat_n(fill, width + 2));
    }
    line.push(right);
    line
}

impl Borders {
    fn new(widths: &[usize]) -> Self {
        Self {
            top: border_line(widths, '┌', '─', '┬', '┐'),
            head: border_line(widths, '╞', '═', '╪', '╡'),
            middle: border_line(widths, '├', '─', '┼', '┤'),
            bottom: border_line(widths, '└', '─', '┴', '┘'),
        }
    }
}

fn pad(text: &str, width: usize, right_align: bool, out: &mut String) {
    let padding = width.saturating_sub(display_width(text));
    if right_align {
        out.extend(std::iter::repeat_n(' ', padding));
        out.push_str(text);
    } else {
        out.push_str(text);
        out.extend(std::iter::repeat_n(' ', padding));
    }
}

/// Draws the table. Every row is followed by a separator line (the last by the bottom
/// border); a row whose cells are all empty has no text line. Without borders the header
/// is left out as well and cells are separated by one space.
pub fn draw(columns: &[Column], layout: Layout) -> String {
    let mut out = String::new();
    if columns.is_empty() {
        return out;
    }
    let mut write_line = |line: &str| {
        match layout.max_line_chars {
            Some(max) => out.extend(line.chars().take(max)),
            None => out.push_str(line),
        }
        out.push('\n');
    };
    let with_header = !(layout.noheader || layout.noborder);
    let widths: Vec<usize> = columns
        .iter()
        .map(|col| {
            let cells = col.cells.iter().map(Cell::width).max().unwrap_or(0);
            if with_header {
                cells.max(col.header.chars().count())
            } else {
                cells
            }
        })
        .collect();
    let borders = Borders::new(&widths);
    if !layout.noborder {
        write_line(&borders.top);
    }
    if with_header {
        let mut header = String::new();
        for (col, width) in columns.iter().zip(&widths) {
            header.push_str("│ ");
            pad(&col.header, *width, col.right_align, &mut header);
            header.push(' ');
        }
        header.push('│');
        write_line(&header);
        write_line(&borders.head);
    }
    let rows = columns[0].cells.len();
    for row in 0..rows {
        let height = columns
            .iter()
            .map(|col| col.cells.get(row).map_or(0, |c| c.lines.len()))
            .max()
            .unwrap_or(0);
        for line_nr in 0..height {
            let mut text = String::new();
            for (i, (col, width)) in columns.iter().zip(&widths).enumerate() {
                let line = col
                    .cells
                    .get(row)
                    .and_then(|c| c.lines.get(line_nr))
                    .map_or("", String::as_str);
                if layout.noborder {
                    if i > 0 {
                        text.push(' ');
                    }
                } else {
                    text.push_str("│ ");
                }
                pad(line, *width, col.right_align, &mut text);
                if !layout.noborder {
                    text.push(' ');
                }
            }
            if !layout.noborder {
                text.push('│');
            }
            write_line(&text);
        }
        if !layout.noborder {
            if row + 1 == rows {
                write_line(&borders.bottom);
            } else {
                write_line(&borders.middle);
            }
        }
    }
    if rows == 0 && !layout.noborder {
        write_line(&borders.bottom);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths() {
        assert_eq!(display_width("abc"), 3);
        assert_eq!(display_width("日本"), 4);
        assert_eq!(display_width("e\u{301}"), 1);
    }

    #[test]
    fn multi_line_cells_and_empty_rows() {
        let columns = vec![
            Column {
                header: "a".into(),
                cells: vec![Cell::new("x\nyy"), Cell::new("")],
                right_align: false,
            },
            Column {
                header: "num".into(),
                cells: vec![Cell::new("7"), Cell::new("")],
                right_align: true,
            },
        ];
        let text = draw(&columns, Layout::default());
        let expected = "\
┌────┬─────┐
│ a  │ num │
╞════╪═════╡
│ x  │   7 │
│ yy │     │
├────┼─────┤
└────┴─────┘
";
        assert_eq!(text, expected);
        let text = draw(
            &columns,
            Layout {
                noborder: true,
                ..Default::default()
            },
        );
        assert_eq!(text, "x  7\nyy  \n");
    }

    #[test]
    fn empty_table_and_truncation() {
        let columns = vec![Column {
            header: "name".into(),
            cells: vec![],
            right_align: false,
        }];
        assert_eq!(
            draw(&columns, Layout::default()),
            "┌──────┐\n│ name │\n╞══════╡\n└──────┘\n"
        );
        let layout = Layout {
            noheader: true,
            max_line_chars: Some(3),
            ..Default::default()
        };
        assert_eq!(draw(&columns, layout), "┌──\n└──\n");
    }
}
