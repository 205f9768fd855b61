//! Hex dumps and byte-for-byte diffs for failure messages.

use std::fmt::Write as _;

fn hex_row(bytes: &[u8], row: usize) -> String {
    (row..row + 16)
        .map(|i| bytes.get(i).map_or("--".into(), |b| format!("{b:02x}")))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn hex_dump(bytes: &[u8]) -> String {
    (0..bytes.len())
        .step_by(16)
        .map(|row| format!("    {row:04x}  {}\n", hex_row(bytes, row)))
        .collect()
}

/// The 16-byte rows where `want` and `got` differ, with a caret under each
/// differing byte ("--" is a byte past the end).
pub fn hex_diff(want: &[u8], got: &[u8]) -> String {
    let mut s = String::new();
    for row in (0..want.len().max(got.len())).step_by(16) {
        let differs: Vec<bool> = (row..row + 16).map(|i| want.get(i) != got.get(i)).collect();
        if !differs.contains(&true) {
            continue;
        }
        let marks: String = differs
            .iter()
            .map(|&d| if d { "^^" } else { "  " })
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(s, "    {row:04x}  want {}", hex_row(want, row));
        let _ = writeln!(s, "          got  {}", hex_row(got, row));
        let _ = writeln!(s, "               {}", marks.trim_end());
    }
    s
}
