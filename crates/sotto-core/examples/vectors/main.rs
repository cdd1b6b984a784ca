//! Test vectors of PROTOCOL.md: `generate FILE` writes version 1's,
//! `generate-v2 FILE` version 2's, and `check FILE` replays any file of
//! either schema (by its `"version"`) and reports every mismatch.
//!
//! ```text
//! cargo run -p sotto-core --example vectors -- generate docs/test-vectors/v1.json
//! cargo run -p sotto-core --example vectors -- generate-v2 docs/test-vectors/v2.json
//! cargo run -p sotto-core --example vectors -- check docs/test-vectors/v1.json
//! cargo run -p sotto-core --example vectors -- check docs/test-vectors/v2.json
//! ```

mod conformance;

use std::process::ExitCode;

fn write(file: &str, generated: Result<String, String>) -> ExitCode {
    match generated {
        Ok(json) => match std::fs::write(file, json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write {file}: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("error: generation failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(file: &str) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let version = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("version").and_then(serde_json::Value::as_u64));
    let report = match version {
        Some(2) => conformance::v2::check_json(&text),
        // Version 1, or a file the version 1 checker reports as outside
        // its schema.
        _ => conformance::check_json(&text),
    };
    for line in &report.failures {
        println!("{line}");
    }
    println!("{}", report.summary());
    if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, file] if cmd == "generate" => write(file, conformance::generate_json()),
        [cmd, file] if cmd == "generate-v2" => write(file, conformance::v2::generate_json()),
        [cmd, file] if cmd == "check" => check(file),
        _ => {
            eprintln!("usage: vectors (generate|generate-v2|check) FILE");
            ExitCode::from(2)
        }
    }
}
