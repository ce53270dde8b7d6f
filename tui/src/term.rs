//! A guest console as a terminal. What the guest writes goes through a VT100/xterm parser
//! (`vt100`): escape sequences move the cursor, erase and colour instead of showing up as
//! `[6n`; the screen is drawn by `tui-term`. Queries a terminal must answer — the cursor
//! position (`ESC[6n`, which busybox's shell sends at every prompt), device status
//! (`ESC[5n`), device attributes (`ESC[c`) — are answered: [`ConsoleTerm::process`]
//! returns the bytes to send back to the guest. Scrollback is bounded
//! ([`ConsoleTerm::SCROLLBACK`] rows), so a guest that floods its console costs a fixed
//! amount of memory.

/// Collects the answers to the guest's terminal queries.
#[derive(Default)]
struct Answers {
    pending: Vec<u8>,
}

/// Answers never queue beyond this: a guest that asks without reading gets no more.
const MAX_PENDING: usize = 4096;

impl vt100::Callbacks for Answers {
    fn unhandled_csi(
        &mut self,
        screen: &mut vt100::Screen,
        i1: Option<u8>,
        _i2: Option<u8>,
        params: &[&[u16]],
        c: char,
    ) {
        let only = |v: u16| params.len() == 1 && params[0] == [v];
        let reply = match (i1, c) {
            // DSR 6: cursor position report, 1-based.
            (None, 'n') if only(6) => {
                let (row, col) = screen.cursor_position();
                format!("\x1b[{};{}R", u32::from(row) + 1, u32::from(col) + 1)
            }
            // DSR 5: "terminal OK".
            (None, 'n') if only(5) => "\x1b[0n".into(),
            // DA1: a VT100 with advanced video.
            (None, 'c') if params.is_empty() || only(0) => "\x1b[?1;2c".into(),
            _ => return,
        };
        if self.pending.len() + reply.len() <= MAX_PENDING {
            self.pending.extend_from_slice(reply.as_bytes());
        }
    }
}

/// One guest console: a terminal screen with bounded scrollback.
pub struct ConsoleTerm {
    parser: vt100::Parser<Answers>,
    /// Rows scrolled back from the live screen (PgUp/PgDn).
    scrolled: usize,
}

impl std::fmt::Debug for ConsoleTerm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (rows, cols) = self.parser.screen().size();
        f.debug_struct("ConsoleTerm").field("rows", &rows).field("cols", &cols).finish_non_exhaustive()
    }
}

impl Default for ConsoleTerm {
    fn default() -> Self {
        Self::new(24, 80)
    }
}

impl ConsoleTerm {
    /// Rows of history kept above the screen.
    pub const SCROLLBACK: usize = 2000;

    /// A blank terminal of `rows` × `cols` (each at least 1).
    pub fn new(rows: u16, cols: u16) -> Self {
        Self {
            parser: vt100::Parser::new_with_callbacks(
                rows.max(1),
                cols.max(1),
                Self::SCROLLBACK,
                Answers::default(),
            ),
            scrolled: 0,
        }
    }

    /// Feeds what the guest wrote; returns what the terminal answers (empty unless the guest
    /// asked something). A bare `\n` also returns the carriage, as a tty with `onlcr` would:
    /// the unikernel and a container's pipe send `\n` alone, Linux's tty `\r\n`.
    pub fn process(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                self.parser.process(&bytes[start..i]);
                self.parser.process(b"\r\n");
                start = i + 1;
            }
        }
        self.parser.process(&bytes[start..]);
        std::mem::take(&mut self.parser.callbacks_mut().pending)
    }

    /// Makes the screen `rows` × `cols` (each at least 1); the text stays where it fits.
    pub fn resize(&mut self, rows: u16, cols: u16) {
        let (rows, cols) = (rows.max(1), cols.max(1));
        if self.parser.screen().size() != (rows, cols) {
            self.parser.screen_mut().set_size(rows, cols);
        }
    }

    /// Scrolls the view `delta` rows back into history (negative: towards the live screen).
    pub fn scroll(&mut self, delta: isize) {
        self.scrolled = self.scrolled.saturating_add_signed(delta).min(Self::SCROLLBACK);
        self.parser.screen_mut().set_scrollback(self.scrolled);
        // The screen clamps to the history it has.
        self.scrolled = self.parser.screen().scrollback();
    }

    /// Rows scrolled back from the live screen (0: live).
    pub fn scrolled(&self) -> usize {
        self.scrolled
    }

    /// The screen to draw.
    pub fn screen(&self) -> &vt100::Screen {
        self.parser.screen()
    }

    /// The visible text, rows joined by newlines, trailing blanks trimmed.
    pub fn text(&self) -> String {
        self.parser.screen().contents()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_position_query_is_answered_with_the_cursor() {
        let mut t = ConsoleTerm::new(24, 80);
        assert!(t.process(b"/ # ").is_empty(), "plain text asks nothing");
        assert_eq!(t.process(b"\x1b[6n"), b"\x1b[1;5R", "row 1, column 5 (after '/ # ')");
        assert_eq!(t.text(), "/ # ", "the query is not shown");
        // busybox measures the width by moving far right first: the answer is clamped.
        assert_eq!(t.process(b"\x1b[999;999H\x1b[6n"), b"\x1b[24;80R");
        assert_eq!(t.process(b"\x1b[5n\x1b[c"), b"\x1b[0n\x1b[?1;2c");
    }

    #[test]
    fn escape_sequences_are_interpreted_and_colours_kept() {
        let mut t = ConsoleTerm::new(5, 20);
        t.process(b"abc\x08\x08X\x1b[K\n\x1b[31mred\x1b[0m");
        assert_eq!(t.text(), "aX\nred");
        let cell = t.screen().cell(1, 0).expect("a cell at row 1");
        assert_eq!(cell.fgcolor(), vt100::Color::Idx(1), "red is kept");
    }

    #[test]
    fn scrollback_is_bounded_and_scrollable() {
        let mut t = ConsoleTerm::new(4, 10);
        for i in 0..(ConsoleTerm::SCROLLBACK + 500) {
            t.process(format!("line {i}\n").as_bytes());
        }
        t.scroll(isize::MAX / 2);
        assert_eq!(t.scrolled(), ConsoleTerm::SCROLLBACK, "history stops at the bound");
        t.scroll(-(ConsoleTerm::SCROLLBACK as isize) - 5);
        assert_eq!(t.scrolled(), 0);
        assert!(t.text().contains(&format!("line {}", ConsoleTerm::SCROLLBACK + 499)));
        // A flood without newlines wraps at the width and stays bounded too.
        t.process(&vec![b'.'; 1 << 20]);
        t.resize(0, 0);
        assert_eq!(t.screen().size(), (1, 1));
    }

    #[test]
    fn unanswered_queries_do_not_pile_up() {
        let mut t = ConsoleTerm::new(24, 80);
        let flood = b"\x1b[6n".repeat(10_000);
        assert!(t.process(&flood).len() <= MAX_PENDING);
    }
}
