//! Progress of long work (an operator's, a wallet's) on stderr: a bar redrawn in place at a terminal, a line
//! per tenth of the way (and at the end) otherwise, so logs and scripts see it too.

use std::io::{IsTerminal, Write};

pub struct Progress {
    what: &'static str,
    terminal: bool,
    last_tenth: usize,
    drawn: bool,
}

impl Progress {
    pub fn new(what: &'static str) -> Self {
        Self { what, terminal: std::io::stderr().is_terminal(), last_tenth: 0, drawn: false }
    }

    /// Nothing shown (for `--json` output).
    pub fn quiet(what: &'static str) -> Self {
        Self { what, terminal: false, last_tenth: usize::MAX, drawn: false }
    }

    pub fn update(&mut self, done: usize, total: usize) {
        let total = total.max(1);
        if self.terminal {
            const WIDTH: usize = 30;
            let filled = done * WIDTH / total;
            eprint!("\r{}: [{}{}] {done}/{total}", self.what, "=".repeat(filled), " ".repeat(WIDTH - filled));
            std::io::stderr().flush().ok();
            self.drawn = true;
            return;
        }
        if self.last_tenth == usize::MAX {
            return;
        }
        let tenth = done * 10 / total;
        if tenth > self.last_tenth || done == total {
            self.last_tenth = tenth;
            eprintln!("{}: {done}/{total}", self.what);
        }
    }

    pub fn finish(self) {
        if self.drawn {
            eprintln!();
        }
    }
}
