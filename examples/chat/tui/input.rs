//! The input line: editing at a cursor, and the lines sent before (Up and
//! Down), as a shell keeps them.

use unicode_width::UnicodeWidthChar;

/// Lines kept for Up/Down (the oldest are forgotten).
const KEPT_LINES: usize = 200;

#[derive(Default)]
pub(crate) struct InputLine {
    /// The line being edited.
    text: Vec<char>,
    /// Where the next character goes (an index into `text`).
    cursor: usize,
    /// Lines entered before, oldest first.
    earlier: Vec<String>,
    /// Which earlier line is shown, while going through them.
    browsing: Option<usize>,
    /// The line being typed when Up was first pressed, for Down to bring
    /// back.
    draft: Vec<char>,
}

impl InputLine {
    pub(crate) fn text(&self) -> String {
        self.text.iter().collect()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    pub(crate) fn insert(&mut self, c: char) {
        self.browsing = None;
        self.text.insert(self.cursor, c);
        self.cursor += 1;
    }

    /// Backspace: the character before the cursor.
    pub(crate) fn delete_before(&mut self) {
        if self.cursor > 0 {
            self.browsing = None;
            self.cursor -= 1;
            self.text.remove(self.cursor);
        }
    }

    /// Delete: the character under the cursor.
    pub(crate) fn delete_at(&mut self) {
        if self.cursor < self.text.len() {
            self.browsing = None;
            self.text.remove(self.cursor);
        }
    }

    /// Ctrl-U: everything before the cursor.
    pub(crate) fn delete_to_start(&mut self) {
        self.browsing = None;
        self.text.drain(..self.cursor);
        self.cursor = 0;
    }

    pub(crate) fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    pub(crate) fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.text.len());
    }

    pub(crate) fn home(&mut self) {
        self.cursor = 0;
    }

    pub(crate) fn end(&mut self) {
        self.cursor = self.text.len();
    }

    /// Up: the line entered before the one shown.
    pub(crate) fn older(&mut self) {
        let shown = match self.browsing {
            None if self.earlier.is_empty() => return,
            None => {
                self.draft = std::mem::take(&mut self.text);
                self.earlier.len() - 1
            }
            Some(i) => i.saturating_sub(1),
        };
        self.show_earlier(shown);
    }

    /// Down: the line entered after the one shown, then the draft.
    pub(crate) fn newer(&mut self) {
        let Some(i) = self.browsing else { return };
        if i + 1 < self.earlier.len() {
            self.show_earlier(i + 1);
        } else {
            self.browsing = None;
            self.text = std::mem::take(&mut self.draft);
            self.cursor = self.text.len();
        }
    }

    fn show_earlier(&mut self, i: usize) {
        if let Some(line) = self.earlier.get(i) {
            self.browsing = Some(i);
            self.text = line.chars().collect();
            self.cursor = self.text.len();
        }
    }

    /// Enter: the line, now empty, and remembered for Up.
    pub(crate) fn take(&mut self) -> String {
        let line = self.text();
        self.text.clear();
        self.draft.clear();
        self.cursor = 0;
        self.browsing = None;
        if !line.trim().is_empty() && self.earlier.last() != Some(&line) {
            if self.earlier.len() == KEPT_LINES {
                self.earlier.remove(0);
            }
            self.earlier.push(line.clone());
        }
        line
    }

    /// What fits in `width` columns with the cursor in view, and the
    /// cursor's column in it.
    pub(crate) fn visible(&self, width: usize) -> (String, usize) {
        let width = width.max(1);
        let col = |chars: &[char]| -> usize { chars.iter().map(|c| c.width().unwrap_or(0)).sum() };
        // Scroll so that the cursor stays on screen, one column spare for it.
        let mut start = 0;
        while col(&self.text[start..self.cursor]) >= width {
            start += 1;
        }
        let mut shown = String::new();
        let mut used = 0;
        for c in &self.text[start..] {
            let w = c.width().unwrap_or(0);
            if used + w > width {
                break;
            }
            used += w;
            shown.push(*c);
        }
        (shown, col(&self.text[start..self.cursor]))
    }
}
