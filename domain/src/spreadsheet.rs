//! Cells bound for a spreadsheet. A CSV export is data, but a spreadsheet that opens it
//! reads a cell starting with `=`, `+`, `-` or `@` as a formula (and a leading tab or
//! carriage return can hide one): text a tenant or a provider wrote (a name, an error
//! message, a summary) could then run as a formula on an auditor's machine ("CSV
//! injection"). Such a cell gets a leading `'`, which spreadsheets take as "this is text".

use std::borrow::Cow;

/// The first characters that make a spreadsheet read a cell as something else than text.
pub const FORMULA_TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// `cell` as it can be written into a CSV file: unchanged, or with a `'` in front when it
/// starts with one of [`FORMULA_TRIGGERS`]. Negative numbers are prefixed too: a cell
/// cannot be both a number and safe from formula evaluation.
pub fn safe_cell(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(FORMULA_TRIGGERS) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formulas_are_made_text() {
        assert_eq!(
            safe_cell("=HYPERLINK(\"http://x\")"),
            "'=HYPERLINK(\"http://x\")"
        );
        assert_eq!(safe_cell("+1"), "'+1");
        assert_eq!(safe_cell("-2+3"), "'-2+3");
        assert_eq!(safe_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(safe_cell("\t=1"), "'\t=1");
        assert_eq!(safe_cell("\r=1"), "'\r=1");
    }

    #[test]
    fn ordinary_cells_are_unchanged() {
        for cell in ["", "42", "a=b", "contact.created", "{\"a\":1}", "'=already"] {
            assert!(matches!(safe_cell(cell), Cow::Borrowed(c) if c == cell));
        }
    }

    proptest! {
        #[test]
        fn no_safe_cell_starts_with_a_trigger(cell in any::<String>()) {
            let safe = safe_cell(&cell);
            prop_assert!(!safe.starts_with(FORMULA_TRIGGERS));
        }

        #[test]
        fn stripping_the_prefix_gives_the_cell_back(
            first in prop::sample::select(FORMULA_TRIGGERS.to_vec()),
            rest in any::<String>(),
        ) {
            let cell = format!("{first}{rest}");
            let safe = safe_cell(&cell);
            prop_assert_eq!(safe.strip_prefix('\''), Some(cell.as_str()));
        }

        #[test]
        fn a_cell_is_changed_only_by_the_prefix(cell in any::<String>()) {
            let safe = safe_cell(&cell);
            let original = if safe.as_ref() == cell { safe.as_ref() } else { &safe[1..] };
            prop_assert_eq!(original, cell.as_str());
        }
    }
}
