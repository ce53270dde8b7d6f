//! The kernel log pane of a Linux guest: the printk ring buffer as `dmesg` shows it, read
//! from guest memory (`inspect::linux::dmesg`, the reader `:dmesg` uses), newest lines at
//! the bottom. Pure state: the runtime ([`crate::guest_tasks`]) feeds it records, `ui.rs`
//! draws it.
//!
//! The pane keeps what it has seen, not only what the ring holds now: each read appends the
//! records newer than the last one kept (by sequence number), so lines survive the ring
//! wrapping, up to [`MAX_LINES`]. A gap in the sequence (the ring wrapped between two reads)
//! is marked; a sequence that goes back (the guest rebooted or was rewound) starts over.
//! A line wider than the pane wraps onto as many rows as it needs, as `dmesg` in a terminal
//! does; scrolling counts rows.

use crate::app::Key;
use inspect::linux::dmesg::Record;
use std::collections::VecDeque;

/// Lines kept; older ones are dropped as new ones come.
pub const MAX_LINES: usize = 2000;

/// What a key in the log pane asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogKey {
    /// Handled here (scrolling): nothing for the runtime.
    Done,
    /// Read the ring now (also while the guest is paused).
    ReadNow,
    /// Not a key of this pane.
    NotMine,
}

/// The pane's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelLog {
    /// The lines kept, oldest first, at most [`MAX_LINES`].
    pub lines: VecDeque<String>,
    /// The sequence number of the newest record kept.
    pub last_seq: Option<u64>,
    /// Rows scrolled up from the newest row (0: the pane follows new lines).
    pub scroll: usize,
    /// Rows of text the pane showed at its last draw ([`Self::fit`]): scrolling stops when
    /// the first line is at the top.
    pub rows: usize,
    /// Columns of the pane at its last draw; a longer line takes several rows (0: no
    /// wrapping, a row per line).
    pub width: usize,
    /// Something the person should know: the vmlinux is being read, the ring is corrupt
    /// (the lines above are those read before), the log is as old as the pause.
    pub note: Option<String>,
    /// Reads so far (0: nothing read yet).
    pub reads: u64,
    /// How long the last read took (guest memory only: no vCPU is stopped for it).
    pub read_time: Option<std::time::Duration>,
}

impl KernelLog {
    /// Adds a read's records (oldest first): those after the newest one kept. Returns how
    /// many lines were added.
    pub fn push_records(&mut self, records: &[Record]) -> usize {
        self.reads += 1;
        let newest = records.iter().map(|r| r.seq).max();
        if let (Some(kept), Some(newest)) = (self.last_seq, newest) {
            if newest < kept {
                // The guest's log went back in time: a reboot or a rewind.
                self.lines.clear();
                self.last_seq = None;
                self.push_line("-- the guest's log starts over (rebooted or rewound) --".into());
            }
        }
        let mut added = 0;
        let rows_before = self.total_rows();
        for r in records {
            if self.last_seq.is_some_and(|kept| r.seq <= kept) {
                continue;
            }
            if let Some(kept) = self.last_seq {
                if r.seq > kept + 1 {
                    self.push_line(format!(
                        "-- {} records lost: the ring wrapped between two reads --",
                        r.seq - kept - 1
                    ));
                    added += 1;
                }
            }
            // A record may hold several lines (continuation lines): one row each.
            let text = r.to_string();
            for line in text.split('\n') {
                self.push_line(line.to_string());
                added += 1;
            }
            self.last_seq = Some(r.seq);
        }
        // Scrolled up: the view stays on the lines the person is reading.
        if self.scroll > 0 {
            let rows_added = self.total_rows().saturating_sub(rows_before);
            self.scroll = (self.scroll + rows_added).min(self.max_scroll());
        }
        added
    }

    /// The rows `line` takes at the pane's width.
    fn rows_of(&self, line: &str) -> usize {
        match self.width {
            0 => 1,
            w => line.chars().count().div_ceil(w).max(1),
        }
    }

    /// The rows all the lines kept take.
    fn total_rows(&self) -> usize {
        self.lines.iter().map(|l| self.rows_of(l)).sum()
    }

    /// `line` cut into the pane's rows.
    fn wrapped<'a>(&self, line: &'a str) -> Vec<&'a str> {
        if self.width == 0 {
            return vec![line];
        }
        let mut rows = vec![];
        let mut rest = line;
        while rest.chars().count() > self.width {
            let cut = rest.char_indices().nth(self.width).map_or(rest.len(), |(i, _)| i);
            rows.push(&rest[..cut]);
            rest = &rest[cut..];
        }
        rows.push(rest);
        rows
    }

    fn push_line(&mut self, line: String) {
        if self.lines.len() == MAX_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    fn max_scroll(&self) -> usize {
        self.total_rows().saturating_sub(self.rows.max(1))
    }

    /// Tells the log how many rows and columns of text its pane has (before each draw).
    pub fn fit(&mut self, rows: usize, width: usize) {
        self.rows = rows;
        self.width = width;
        self.scroll = self.scroll.min(self.max_scroll());
    }

    /// The rows that fit a pane of `rows` rows at the current scroll position, oldest first
    /// (a full pane from the first line when scrolled to the top).
    pub fn window(&self, rows: usize) -> Vec<&str> {
        let mut skip = self.scroll.min(self.total_rows().saturating_sub(rows));
        let mut shown = Vec::with_capacity(rows);
        'lines: for line in self.lines.iter().rev() {
            for row in self.wrapped(line).into_iter().rev() {
                if shown.len() == rows {
                    break 'lines;
                }
                if skip > 0 {
                    skip -= 1;
                } else {
                    shown.push(row);
                }
            }
        }
        shown.reverse();
        shown
    }

    /// Handles a key while the pane has focus.
    pub fn on_key(&mut self, key: Key) -> LogKey {
        let by = |s: usize, n: isize| s.saturating_add_signed(n);
        self.scroll = match key {
            Key::Up => by(self.scroll, 1),
            Key::Down => by(self.scroll, -1),
            Key::PageUp => by(self.scroll, 10),
            Key::PageDown => by(self.scroll, -10),
            Key::Home => self.max_scroll(),
            Key::End => 0,
            Key::Char('r') => return LogKey::ReadNow,
            _ => return LogKey::NotMine,
        }
        .min(self.max_scroll());
        LogKey::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, text: &str) -> Record {
        Record { seq, ts_nsec: seq * 1_000_000, text: text.into() }
    }

    fn texts(l: &KernelLog, rows: usize) -> Vec<String> {
        l.window(rows).into_iter().map(|s| s.split("] ").nth(1).unwrap_or(s).to_string()).collect()
    }

    #[test]
    fn reads_append_only_new_records_and_follow_the_tail() {
        let mut l = KernelLog::default();
        assert_eq!(l.push_records(&[rec(0, "Linux version 6.1"), rec(1, "two")]), 2);
        assert_eq!(l.push_records(&[rec(0, "Linux version 6.1"), rec(1, "two"), rec(2, "three")]), 1);
        assert_eq!(texts(&l, 2), ["two", "three"], "the newest at the bottom");
        assert_eq!(l.lines[0], "[    0.000000] Linux version 6.1", "dmesg's format");
        assert_eq!(l.reads, 2);
    }

    #[test]
    fn scrolling_up_holds_the_view_while_lines_come() {
        let mut l = KernelLog::default();
        l.push_records(&(0..20).map(|i| rec(i, &format!("line {i}"))).collect::<Vec<_>>());
        l.fit(2, 0);
        assert_eq!(l.on_key(Key::PageUp), LogKey::Done);
        assert_eq!(texts(&l, 2), ["line 8", "line 9"]);
        l.push_records(&[rec(20, "line 20"), rec(21, "line 21")]);
        assert_eq!(texts(&l, 2), ["line 8", "line 9"], "the view stays put");
        assert_eq!(l.on_key(Key::End), LogKey::Done);
        assert_eq!(texts(&l, 1), ["line 21"], "End follows the tail again");
        l.on_key(Key::Home);
        assert_eq!(texts(&l, 2), ["line 0", "line 1"], "Home shows the first lines");
        for _ in 0..100 {
            l.on_key(Key::Up);
        }
        assert_eq!(l.scroll, 20, "scrolling stops with the first line at the top");
        l.fit(5, 0);
        assert_eq!(l.scroll, 17, "a taller pane scrolls less far");
        assert_eq!(texts(&l, 5)[0], "line 0");
        for _ in 0..100 {
            l.on_key(Key::Down);
        }
        assert_eq!(l.scroll, 0);
        assert_eq!(l.on_key(Key::Char('r')), LogKey::ReadNow);
        assert_eq!(l.on_key(Key::Char('s')), LogKey::NotMine, "debugger keys go on");
    }

    #[test]
    fn lines_are_bounded_and_gaps_and_restarts_are_marked() {
        let mut l = KernelLog::default();
        let many: Vec<Record> = (0..MAX_LINES as u64 + 500).map(|i| rec(i, "x")).collect();
        l.push_records(&many);
        assert_eq!(l.lines.len(), MAX_LINES);
        l.fit(10, 0);
        l.on_key(Key::Home);
        assert_eq!(l.scroll, MAX_LINES - 10);
        l.push_records(&[rec(MAX_LINES as u64 + 600, "after a wrap")]);
        assert_eq!(l.lines.len(), MAX_LINES);
        assert_eq!(l.scroll, MAX_LINES - 10, "scrolling never passes the first line kept");
        l.on_key(Key::End);
        assert_eq!(texts(&l, 2)[0], "-- 100 records lost: the ring wrapped between two reads --");
        l.push_records(&[rec(0, "Linux version again")]);
        assert_eq!(
            texts(&l, 5),
            ["-- the guest's log starts over (rebooted or rewound) --", "Linux version again"]
        );
    }

    #[test]
    fn a_record_of_several_lines_takes_a_row_each() {
        let mut l = KernelLog::default();
        assert_eq!(l.push_records(&[rec(0, "first\n second")]), 2);
        assert_eq!(l.window(5).len(), 2);
        assert!(KernelLog::default().window(5).is_empty());
    }

    #[test]
    fn a_line_wider_than_the_pane_wraps_and_scrolling_counts_rows() {
        let mut l = KernelLog::default();
        l.push_records(&[rec(0, "short"), rec(1, &"x".repeat(50)), rec(2, "last")]);
        // "[    0.001000] " is 15 columns: 65 of them at 20 columns is 4 rows.
        l.fit(3, 20);
        let rows = l.window(3);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2], "[    0.002000] last");
        assert_eq!(rows[1], "x".repeat(5), "the long line's last row");
        assert!(rows.iter().all(|r| r.chars().count() <= 20));
        l.on_key(Key::Home);
        assert_eq!(l.scroll, 6 - 3, "1 + 4 + 1 rows in all");
        assert_eq!(l.window(3), ["[    0.000000] short", "[    0.001000] xxxxx", "x".repeat(20).as_str()]);
        // Scrolled up, new lines keep the view on the same rows, by rows they add.
        l.push_records(&[rec(3, &"y".repeat(30))]);
        assert_eq!(l.window(3)[0], "[    0.000000] short");
        // Multi-byte characters are cut between characters, never inside one.
        l.push_records(&[rec(4, &"é".repeat(30))]);
        l.on_key(Key::End);
        // 15 + 30 characters at 20 columns: the prefix and 5, then 20, then 5.
        assert_eq!(l.window(3), [format!("[    0.004000] {}", "é".repeat(5)), "é".repeat(20), "é".repeat(5)]);
        // A narrower pane: the same line takes more rows, and the view is clamped.
        l.fit(100, 1);
        assert_eq!(l.scroll, 0);
        assert_eq!(l.window(2), ["é", "é"]);
    }
}
