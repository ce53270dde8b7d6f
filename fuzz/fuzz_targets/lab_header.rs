//! Lab texts (`labs::lab::Lab::parse`): the TOML header between `+++` lines, its
//! validation and error reporting (which points at the field), and the Markdown sections.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match labs::lab::Lab::parse("fuzz.md", text) {
        Ok(lab) => {
            for c in &lab.header.checks {
                let _ = (c.summary(), c.answer_key(), c.question());
            }
            for s in &lab.sections {
                for b in &s.blocks {
                    let _ = format!("{b:?}");
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
