//! Keys in both directions: terminal events to the app's [`Key`]s, and a [`Key`] to the
//! bytes a terminal (xterm, VT220 editing keys) sends for it, which is what a guest console
//! with focus receives: Backspace is DEL (0x7f), Ctrl-letters are control bytes (Ctrl-C is
//! 0x03, an interrupt for the guest's shell), arrows and Home/End/Delete are escape
//! sequences. The one key a console never gets is [`ESCAPE_KEY`]: it hands the keyboard
//! back to vmscope, like telnet's Ctrl-].

use crate::app::Key;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// The key that leaves a console, as the status line and help name it.
pub const ESCAPE_KEY: &str = "Ctrl-]";

/// The app's key for a terminal key event (None: a key the app has no use for).
pub fn from_crossterm(k: KeyEvent) -> Option<Key> {
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    Some(match k.code {
        // A raw terminal sends Ctrl-] as 0x1d, which crossterm reports as Ctrl-5.
        KeyCode::Char(']' | '5') if ctrl => Key::Ctrl(']'),
        KeyCode::Char(c) if ctrl && c.is_ascii_alphabetic() => Key::Ctrl(c.to_ascii_lowercase()),
        KeyCode::Char(c) if ctrl && matches!(c, '@' | '[' | '\\' | '^' | '_' | ' ') => Key::Ctrl(c),
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Delete => Key::Delete,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        _ => return None,
    })
}

/// What a terminal sends for `key` (None: nothing, e.g. [`ESCAPE_KEY`], which vmscope keeps).
pub fn to_terminal(key: Key) -> Option<Vec<u8>> {
    let seq = |s: &str| Some(s.as_bytes().to_vec());
    match key {
        Key::Char(c) => Some(c.to_string().into_bytes()),
        // A terminal's Return is CR; the guest's tty turns it into a newline (icrnl).
        Key::Enter => seq("\r"),
        Key::Esc => seq("\x1b"),
        Key::Backspace => seq("\x7f"),
        Key::Tab => seq("\t"),
        Key::BackTab => seq("\x1b[Z"),
        Key::Up => seq("\x1b[A"),
        Key::Down => seq("\x1b[B"),
        Key::Right => seq("\x1b[C"),
        Key::Left => seq("\x1b[D"),
        Key::Home => seq("\x1b[H"),
        Key::End => seq("\x1b[F"),
        Key::Delete => seq("\x1b[3~"),
        Key::PageUp => seq("\x1b[5~"),
        Key::PageDown => seq("\x1b[6~"),
        Key::Ctrl(']') => None,
        // Ctrl-@ is NUL, Ctrl-A..Z 0x01..0x1a, Ctrl-[ \ ^ _ 0x1b..0x1f (the low 5 bits).
        Key::Ctrl(' ') => Some(vec![0]),
        Key::Ctrl(c) if c.is_ascii_lowercase() || matches!(c, '@' | '[' | '\\' | '^' | '_') => {
            Some(vec![(c.to_ascii_uppercase() as u8) & 0x1f])
        }
        Key::Ctrl(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn keys_become_what_a_terminal_sends() {
        assert_eq!(to_terminal(Key::Backspace), Some(vec![0x7f]), "Backspace is DEL");
        assert_eq!(to_terminal(Key::Ctrl('c')), Some(vec![0x03]), "Ctrl-C interrupts");
        assert_eq!(to_terminal(Key::Ctrl('h')), Some(vec![0x08]));
        assert_eq!(to_terminal(Key::Ctrl('d')), Some(vec![0x04]));
        assert_eq!(to_terminal(Key::Ctrl('\\')), Some(vec![0x1c]));
        assert_eq!(to_terminal(Key::Enter), Some(b"\r".to_vec()));
        assert_eq!(to_terminal(Key::Up), Some(b"\x1b[A".to_vec()));
        assert_eq!(to_terminal(Key::Left), Some(b"\x1b[D".to_vec()));
        assert_eq!(to_terminal(Key::Home), Some(b"\x1b[H".to_vec()));
        assert_eq!(to_terminal(Key::End), Some(b"\x1b[F".to_vec()));
        assert_eq!(to_terminal(Key::Delete), Some(b"\x1b[3~".to_vec()));
        assert_eq!(to_terminal(Key::Char('é')), Some("é".as_bytes().to_vec()), "UTF-8 as typed");
        assert_eq!(to_terminal(Key::Ctrl(']')), None, "the escape key stays with vmscope");
    }

    #[test]
    fn terminal_events_become_keys() {
        let ctrl = KeyModifiers::CONTROL;
        assert_eq!(from_crossterm(ev(KeyCode::Char('c'), ctrl)), Some(Key::Ctrl('c')));
        assert_eq!(from_crossterm(ev(KeyCode::Char('H'), ctrl)), Some(Key::Ctrl('h')));
        assert_eq!(from_crossterm(ev(KeyCode::Char(']'), ctrl)), Some(Key::Ctrl(']')));
        assert_eq!(
            from_crossterm(ev(KeyCode::Char('5'), ctrl)),
            Some(Key::Ctrl(']')),
            "0x1d as crossterm reads it"
        );
        assert_eq!(from_crossterm(ev(KeyCode::Char('q'), KeyModifiers::NONE)), Some(Key::Char('q')));
        assert_eq!(from_crossterm(ev(KeyCode::Backspace, KeyModifiers::NONE)), Some(Key::Backspace));
        assert_eq!(from_crossterm(ev(KeyCode::Delete, KeyModifiers::NONE)), Some(Key::Delete));
        assert_eq!(from_crossterm(ev(KeyCode::F(5), KeyModifiers::NONE)), None);
    }
}
