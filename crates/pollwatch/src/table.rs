//! Aligned tables for a terminal: text left, numbers right, with thousands separators (tables
//! only; `--json` prints plain numbers).

use std::fmt::Write as _;

/// `1234567` as `1,234,567`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A fraction as a percentage with one decimal, e.g. `0.4567` as `45.7 %`.
pub fn percent(fraction: f64) -> String {
    format!("{:.1} %", fraction * 100.0)
}

/// A cell: text is left-aligned, numbers right-aligned.
#[derive(Debug, Clone)]
pub enum Cell {
    Text(String),
    Number(String),
}

impl Cell {
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }

    pub fn int(n: i64) -> Self {
        Self::Number(thousands(n))
    }

    pub fn share(fraction: f64) -> Self {
        Self::Number(percent(fraction))
    }

    fn content(&self) -> &str {
        match self {
            Self::Text(s) | Self::Number(s) => s,
        }
    }
}

#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self { header: header.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.content().chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: Vec<(&str, bool)>| {
            let mut text = String::new();
            for (i, (content, right)) in cells.into_iter().enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                let pad = widths[i].saturating_sub(content.chars().count());
                if right {
                    let _ = write!(text, "{}{content}", " ".repeat(pad));
                } else {
                    let _ = write!(text, "{content}{}", " ".repeat(pad));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        // A column of numbers has its heading right-aligned too.
        let numeric: Vec<bool> = (0..columns)
            .map(|i| self.rows.iter().any(|row| matches!(row.get(i), Some(Cell::Number(_)))))
            .collect();
        line(&mut out, self.header.iter().zip(&numeric).map(|(h, n)| (h.as_str(), *n)).collect());
        for row in &self.rows {
            line(&mut out, row.iter().map(|c| (c.content(), matches!(c, Cell::Number(_)))).collect());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated_by_commas() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(-45_000), "-45,000");
        assert_eq!(thousands(i64::MIN), "-9,223,372,036,854,775,808");
    }

    #[test]
    fn columns_line_up_numbers_right_text_left() {
        let mut table = Table::new(&["region", "votes"]);
        table.row(vec![Cell::text("bishkek"), Cell::int(1_500)]);
        table.row(vec![Cell::text("osh"), Cell::int(20)]);
        assert_eq!(table.render(), "region   votes\nbishkek  1,500\nosh         20\n");
    }
}
