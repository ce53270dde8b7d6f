//! Reading one cell of a table that a step printed — `ps` inside the guest, vmscope's `ps`,
//! a drgn script — for the `logged` check's `column` + `row` form: "the PID on the row whose
//! COMM is miner".
//!
//! A table is a header line of column names and the lines right under it. Columns are the
//! header's words, left to right, and a row's cells are its words in the same order; the
//! last column takes the rest of the line (a command line with its arguments). Each row has
//! at least as many words as the header, so the table ends at the first line that has
//! fewer: a shell prompt, a blank line, a marker. A name that occurs twice in a header
//! (busybox `ps -o comm,args` prints `COMMAND` twice) stands for its first column.
//!
//! ```text
//! PID   PPID  COMMAND        header = "PID", column = "PPID", row = COMMAND is "miner"
//!    31     1 sh
//!    35    31 miner          → 31
//! / #                        (the table ends here)
//! ```

/// A table found under a header line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// The column names.
    pub columns: Vec<String>,
    /// Each row's cells, one per column.
    pub rows: Vec<Vec<String>>,
}

/// A cell picked out of a [`Table`]: the row it is on and the column it is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    /// Index into [`Table::rows`].
    pub row: usize,
    /// Index into [`Table::columns`].
    pub column: usize,
}

impl Table {
    /// The table whose header is the `occurrence`-th line (from 1) of `text` that contains
    /// `header`; `None` when there is no such line.
    pub fn under(text: &str, header: &str, occurrence: usize) -> Option<Table> {
        let lines: Vec<&str> = text.lines().collect();
        let at =
            lines.iter().enumerate().filter(|(_, l)| l.contains(header)).nth(occurrence.checked_sub(1)?)?.0;
        let columns: Vec<String> = lines[at].split_whitespace().map(str::to_string).collect();
        let rows = lines[at + 1..]
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<&str>>())
            .take_while(|words| !columns.is_empty() && words.len() >= columns.len())
            .map(|words| {
                let last = columns.len() - 1;
                let mut cells: Vec<String> = words[..last].iter().map(|w| w.to_string()).collect();
                cells.push(words[last..].join(" "));
                cells
            })
            .collect();
        Some(Table { columns, rows })
    }

    /// The index of the column called `name` (its first, if the header repeats it).
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The cell in column `column` of the first row whose `key` column is exactly `equals`.
    pub fn find(&self, column: usize, key: usize, equals: &str) -> Option<Cell> {
        self.rows.iter().position(|r| r[key] == equals).map(|row| Cell { row, column })
    }

    /// The text of a cell.
    pub fn text(&self, cell: Cell) -> &str {
        &self.rows[cell.row][cell.column]
    }

    /// Every cell for which `matches` holds, the cells on `near`'s row first (the learner
    /// read the right row but the wrong column), then those in `near`'s column (the right
    /// column, the wrong row), then the rest — so that a wrong answer is named by its most
    /// likely mistake.
    pub fn cells_where(&self, near: Cell, matches: impl Fn(&str) -> bool) -> Vec<Cell> {
        let mut all: Vec<Cell> = (0..self.rows.len())
            .flat_map(|row| (0..self.columns.len()).map(move |column| Cell { row, column }))
            .filter(|c| *c != near && matches(self.text(*c)))
            .collect();
        all.sort_by_key(|c| match (c.row == near.row, c.column == near.column) {
            (true, _) => 0,
            (_, true) => 1,
            _ => 2,
        });
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What busybox `ps -o pid,ppid,comm` printed on the guest's console (a real run, cut),
    /// with the shell's prompt and the next command after it.
    const GUEST_PS: &str = "/ # ps -o pid,ppid,comm\r\n\
        PID   PPID  COMMAND\r\n    1     0 init\r\n    2     0 kthreadd\r\n   31     1 sh\r\n\
        \x20  32    31 sleep\r\n   37    31 ps\r\n/ # \r\n/ # ps -o pid,ppid,comm\r\nPID   PPID  COMMAND\r\n   31     1 sh\r\n";

    /// vmscope's `ps` (a real run, cut): TASK and PGD after the name.
    const VMSCOPE_PS: &str = "   PID   TGID S COMM             TASK               PGD
     0      0 R swapper/0        0xffffffff82a0c940 -
     2      2 S kthreadd         0xffff888000219000 -
    31     31 S sh               0xffff8880002ac000 0x2d9000
    35     35 S miner            0xffff8880002b0000 0x2ef000
";

    #[test]
    fn a_table_ends_at_the_first_line_shorter_than_its_header() {
        let t = Table::under(GUEST_PS, "PID", 1).unwrap();
        assert_eq!(t.columns, ["PID", "PPID", "COMMAND"]);
        assert_eq!(t.rows.len(), 5, "{t:?}");
        assert_eq!(t.rows[3], ["32", "31", "sleep"]);
        // The second ps is the second occurrence of the header.
        assert_eq!(Table::under(GUEST_PS, "PID", 2).unwrap().rows, [["31", "1", "sh"]]);
        assert!(Table::under(GUEST_PS, "PID", 3).is_none());
        assert!(Table::under(GUEST_PS, "PID", 0).is_none());
        assert!(Table::under(GUEST_PS, "TGID", 1).is_none());
        assert_eq!(Table::under("", "PID", 1), None);
    }

    #[test]
    fn the_last_column_takes_the_rest_of_the_line() {
        let t = Table::under(
            "  PID USER     COMMAND\n   32 0        sleep 1001\n    2 0        [kthreadd]\n",
            "PID",
            1,
        )
        .unwrap();
        let (pid, command) = (t.column("PID").unwrap(), t.column("COMMAND").unwrap());
        let c = t.find(pid, command, "sleep 1001").unwrap();
        assert_eq!(t.text(c), "32");
        assert_eq!(t.find(pid, command, "sleep"), None, "a cell is matched whole");
    }

    #[test]
    fn finds_the_cell_on_the_row_whose_key_is_given() {
        let t = Table::under(VMSCOPE_PS, "PGD", 1).unwrap();
        let (pid, comm, pgd) =
            (t.column("PID").unwrap(), t.column("COMM").unwrap(), t.column("PGD").unwrap());
        assert_eq!(t.text(t.find(pid, comm, "miner").unwrap()), "35");
        assert_eq!(t.text(t.find(pgd, comm, "miner").unwrap()), "0x2ef000");
        assert_eq!(t.text(t.find(pgd, comm, "kthreadd").unwrap()), "-");
        assert_eq!(t.find(pid, comm, "nothing"), None);
        assert_eq!(t.column("PPID"), None);
        // A repeated name is its first column.
        let twice = Table::under("PID COMMAND COMMAND\n1 init /bin/sh /init\n", "PID", 1).unwrap();
        assert_eq!(twice.column("COMMAND"), Some(1));
        assert_eq!(twice.rows[0], ["1", "init", "/bin/sh /init"]);
    }

    #[test]
    fn wrong_answers_are_found_on_the_same_row_first() {
        let t = Table::under(GUEST_PS, "PID", 1).unwrap();
        let (pid, command) = (t.column("PID").unwrap(), t.column("COMMAND").unwrap());
        let sleep = t.find(pid, command, "sleep").unwrap();
        // 31 is sleep's PPID and sh's PID: the same row comes first.
        let c = t.cells_where(sleep, |s| s == "31");
        assert_eq!(c[0], Cell { row: sleep.row, column: 1 });
        assert_eq!(c[1], Cell { row: 2, column: pid });
        // 2 is kthreadd's PID (the same column) and no one's PPID here.
        assert_eq!(t.cells_where(sleep, |s| s == "2"), [Cell { row: 1, column: pid }]);
        // The right cell itself is not a mistake.
        assert!(t.cells_where(sleep, |s| s == "32").is_empty());
    }
}
